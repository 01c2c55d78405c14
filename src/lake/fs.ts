import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { mapLimit } from '../parallel.ts';
import { assertSafeKey, type Lake, LakeNotFound, type ObjectInfo, type PutOptions } from './port.ts';

/** Bytes of a streamed body gathered before each write to the file. */
const WRITE_BATCH = 1 << 20;

/**
 * Writes every byte of `buffers` at the file's position, and returns how many. A write may take
 * fewer bytes than it is given (a disk filling up takes what fits, and says ENOSPC only at the next
 * call): the rest is written again until all of it is there or a call fails. Taking the first
 * answer as the whole once stored a truncated photo, fsynced, renamed into place and answered 202.
 */
export async function writeAll(
  handle: { writev(buffers: Buffer[]): Promise<{ bytesWritten: number }> },
  buffers: Buffer[],
): Promise<number> {
  let total = 0;
  for (const buffer of buffers) total += buffer.length;
  let rest = buffers;
  let written = 0;
  while (written < total) {
    const { bytesWritten } = await handle.writev(rest);
    if (bytesWritten <= 0)
      throw Object.assign(new Error(`the file took no more bytes (${written} of ${total} written)`), {
        code: 'EIO',
      });
    written += bytesWritten;
    rest = after(rest, bytesWritten);
  }
  return written;
}

/** What is left of `buffers` once their first `n` bytes are written. */
function after(buffers: Buffer[], n: number): Buffer[] {
  let i = 0;
  let left = n;
  while (i < buffers.length && left >= buffers[i]!.length) left -= buffers[i++]!.length;
  const rest = buffers.slice(i);
  if (left > 0) rest[0] = rest[0]!.subarray(left);
  return rest;
}

/** How many files deleteMany removes at once. */
export const FS_DELETE_CONCURRENCY = 32;

/**
 * The lake on a local filesystem. A write goes to a temporary file beside its target, is fsynced,
 * then renamed over it, so a crash leaves either the old object, the new one, or a stray temp file
 * (named `.tmp-*`, skipped by list and swept by sweepTemp) but never a torn object.
 */
export class FsLake implements Lake {
  readonly root: string;
  private readonly madeDirs = new Set<string>();
  private readonly dirSyncs = new Map<string, { queued?: Promise<void>; running?: Promise<void> }>();

  constructor(root: string) {
    this.root = root;
  }

  describe(): string {
    return `file://${this.root}`;
  }

  private path(key: string): string {
    assertSafeKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<number> {
    const durable = options.durable ?? true;
    const target = this.path(key);
    const dir = dirname(target);
    const temp = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
    // One descriptor for the whole write (open, write, fsync, close): a small object costs four
    // calls on libuv's threads, which is most of what storing a thumbnail costs.
    const handle = await this.create(temp, dir);
    let bytes = 0;
    try {
      try {
        if (Buffer.isBuffer(body)) {
          // A write, not writeFile: writeFile hands a body to libuv's threads 512 KiB at a time, so
          // a photo from Kafka (a few MB) cost several round trips; a file takes a whole write.
          bytes = await writeAll(handle, [body]);
        } else {
          // Chunks go to the file a batch at a time (one writev on libuv's threads per WRITE_BATCH
          // bytes, as fs.WriteStream does with what arrives while it writes), not one call per
          // network chunk: an upload arrives in chunks of 16 to 64 KB.
          let batch: Buffer[] = [];
          let batched = 0;
          for await (const chunk of body) {
            batch.push(chunk as Buffer);
            batched += (chunk as Buffer).length;
            if (batched >= WRITE_BATCH) {
              bytes += await writeAll(handle, batch);
              batch = [];
              batched = 0;
            }
          }
          if (batched > 0) bytes += await writeAll(handle, batch);
        }
        if (durable) await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    if (durable) await this.syncDirGrouped(dir);
    return bytes;
  }

  /**
   * Creates the temporary file of a write. Folders known to exist are not made again (a mkdir per
   * object was one more call on libuv's threads); one removed since (the purge prunes empty day
   * partitions, in any process) is made again when the create finds it gone.
   */
  private async create(temp: string, dir: string): Promise<FileHandle> {
    if (!this.madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.rememberDir(dir);
    }
    try {
      return await open(temp, 'wx');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      this.madeDirs.delete(dir);
      await mkdir(dir, { recursive: true });
      this.rememberDir(dir);
      return open(temp, 'wx');
    }
  }

  private rememberDir(dir: string): void {
    // Bounded: renditions get a folder per image, so the set would otherwise grow with the lake.
    if (this.madeDirs.size >= 4096) this.madeDirs.clear();
    this.madeDirs.add(dir);
  }

  /**
   * The folder's fsync that makes a rename durable, shared by the writes into one folder at once
   * (group commit): a rename done before a folder's fsync starts is covered by it, so a write joins
   * the fsync queued and not started yet, or queues the next one. Concurrent uploads into one day
   * partition then cost one folder fsync per round instead of one each.
   */
  private syncDirGrouped(dir: string): Promise<void> {
    let state = this.dirSyncs.get(dir);
    if (!state) {
      state = {};
      this.dirSyncs.set(dir, state);
    }
    if (state.queued) return state.queued;
    const s = state;
    const queued = (s.running ?? Promise.resolve())
      .catch(() => {})
      .then(() => {
        // From here a new rename needs an fsync that starts after this one: the next queued.
        s.queued = undefined;
        const running = this.syncDir(dir);
        s.running = running;
        void running
          .catch(() => {})
          .finally(() => {
            if (s.running !== running) return;
            s.running = undefined;
            if (!s.queued) this.dirSyncs.delete(dir);
          });
        return running;
      });
    s.queued = queued;
    return queued;
  }

  // The rename is durable only once the directory entry is on disk.
  private async syncDir(dir: string): Promise<void> {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async get(key: string): Promise<Readable> {
    const path = this.path(key);
    try {
      await stat(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new LakeNotFound(key);
      throw error;
    }
    return createReadStream(path);
  }

  async getBuffer(key: string): Promise<Buffer> {
    try {
      return await readFile(this.path(key));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new LakeNotFound(key);
      throw error;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.path(key));
      return s.isFile() ? { key, bytes: s.size, modifiedAt: s.mtime } : undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    await unlinkIfPresent(path);
    await this.pruneEmptyParents(dirname(path));
  }

  // Purges empty whole day partitions; leaving their folders behind would look like data to an auditor.
  private async pruneEmptyParents(dir: string): Promise<void> {
    while (dir.startsWith(this.root + sep) && dir !== this.root) {
      try {
        await rmdir(dir);
      } catch {
        return;
      }
      dir = dirname(dir);
    }
  }

  async children(prefix: string): Promise<string[]> {
    const dir = prefix.replace(/\/$/, '');
    try {
      const entries = await readdir(dir ? this.path(dir) : this.root, { withFileTypes: true });
      return entries
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async deleteMany(keys: string[]): Promise<void> {
    // Many files at once: each removal waits on the disk, and a purge removes millions. Then each
    // folder they were in is pruned once, not once per file. Two prunes meeting in a parent are
    // harmless: rmdir removes only an empty folder, and the one that fails stops there.
    const paths = keys.map((key) => this.path(key));
    await mapLimit(paths, FS_DELETE_CONCURRENCY, unlinkIfPresent);
    await mapLimit([...new Set(paths.map((path) => dirname(path)))], FS_DELETE_CONCURRENCY, (dir) =>
      this.pruneEmptyParents(dir),
    );
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk only the directory that can hold the prefix, not the whole lake.
    const lastSlash = prefix.lastIndexOf('/');
    const dirKey = lastSlash >= 0 ? prefix.slice(0, lastSlash) : '';
    const start = dirKey ? this.path(dirKey) : this.root;
    yield* this.walk(start, prefix);
  }

  private async *walk(dir: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const full = join(dir, entry.name);
      const key = relative(this.root, full).split(sep).join('/');
      if (entry.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(full, prefix);
      } else if (entry.isFile() && !entry.name.startsWith('.tmp-') && key.startsWith(prefix)) {
        const s = await stat(full).catch(() => undefined);
        if (s) yield { key, bytes: s.size, modifiedAt: s.mtime };
      }
    }
  }

  async check(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await this.put('.health/check', Buffer.from(new Date().toISOString()));
  }
}

/** Removes a file; an absent one is not an error (purges are retried). One call, where rm adds an lstat. */
async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
