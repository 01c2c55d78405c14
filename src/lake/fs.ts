import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { mapLimit } from '../parallel.ts';
import { assertSafeKey, type Lake, LakeNotFound, type ObjectInfo, type PutOptions } from './port.ts';

/** How many files deleteMany removes at once. */
export const FS_DELETE_CONCURRENCY = 32;

/**
 * The lake on a local filesystem. A write goes to a temporary file beside its target, is fsynced,
 * then renamed over it, so a crash leaves either the old object, the new one, or a stray temp file
 * (named `.tmp-*`, skipped by list and swept by sweepTemp) but never a torn object.
 */
export class FsLake implements Lake {
  readonly root: string;

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
    await mkdir(dirname(target), { recursive: true });
    const temp = join(dirname(target), `.tmp-${randomBytes(6).toString('hex')}`);
    let file: ReturnType<typeof createWriteStream> | undefined;
    try {
      file = createWriteStream(temp, { flags: 'wx' });
      await pipeline(Buffer.isBuffer(body) ? Readable.from([body]) : body, file);
      const handle = await open(temp, 'r');
      let bytes: number;
      try {
        if (durable) await handle.sync();
        bytes = (await handle.stat()).size;
      } finally {
        await handle.close();
      }
      await rename(temp, target);
      if (durable) await this.syncDir(dirname(target));
      return bytes;
    } catch (error) {
      // pipeline closes the file when a stream fails, but not when it refuses its arguments before
      // starting: without this the descriptor would stay open (one per refused upload).
      // The stream opens its file asynchronously: wait for it to be closed, or the file could be
      // created after the removal below and stay behind.
      if (file && !file.closed) {
        const closed = new Promise<void>((resolve) => file!.once('close', () => resolve()));
        file.destroy();
        await closed;
      }
      await rm(temp, { force: true });
      throw error;
    }
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
