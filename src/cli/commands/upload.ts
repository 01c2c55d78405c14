import { createHash } from 'node:crypto';
import { createReadStream, openAsBlob } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import cliProgress from 'cli-progress';
import type { ApiClient } from '../client.ts';
import { defaultTusStatePath, TUS_OVER_DEFAULT, tusUploadOne } from './tus-upload.ts';

export interface UploadOptions {
  concurrency: number;
  wait: boolean;
  quiet: boolean;
  /** A backfill: sent with `Imagelake-Priority: bulk`, processed when no interactive work waits. */
  bulk?: boolean;
  /** Files larger than this go over tus (resumable); the others in one POST. */
  tusOver?: number;
  /** The file where unfinished tus uploads are remembered between runs. */
  tusState?: string;
}

type Outcome =
  | { path: string; result: 'accepted' | 'duplicate'; id: string; bytes: number }
  | { path: string; result: 'rejected' | 'failed'; code: string; message: string; bytes: number };

/** Every file under the given files and folders, skipping hidden ones. */
export async function collectFiles(paths: string[]): Promise<Array<{ path: string; bytes: number }>> {
  const files: Array<{ path: string; bytes: number }> = [];
  async function visit(path: string): Promise<void> {
    const info = await stat(path);
    if (info.isDirectory()) {
      const entries = (await readdir(path)).filter((name) => !name.startsWith('.')).sort();
      for (const entry of entries) await visit(join(path, entry));
    } else if (info.isFile()) {
      files.push({ path, bytes: info.size });
    }
  }
  for (const path of paths) await visit(path);
  return files;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// The content hash is the idempotency key, so running the same upload twice lands nothing twice.
async function uploadOne(
  client: ApiClient,
  file: { path: string; bytes: number },
  options: UploadOptions,
  onBytes: (sent: number) => void,
): Promise<Outcome> {
  const bulk = Boolean(options.bulk);
  const key = await sha256File(file.path);
  if (file.bytes > (options.tusOver ?? TUS_OVER_DEFAULT)) {
    const outcome = await tusUploadOne(
      client,
      client.key ?? '',
      { ...file, sha256: key },
      { bulk, statePath: options.tusState ?? defaultTusStatePath(), onBytes },
    );
    return { path: file.path, bytes: file.bytes, ...outcome };
  }
  for (let attempt = 1; ; attempt++) {
    let response: Response;
    try {
      response = await client.request('POST', '/v1/images', {
        body: await openAsBlob(file.path),
        headers: {
          'content-type': 'application/octet-stream',
          'idempotency-key': key,
          'x-filename': encodeURIComponent(basename(file.path)),
          ...(bulk ? { 'imagelake-priority': 'bulk' } : {}),
        },
      });
    } catch (error) {
      if (attempt < 4) {
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
        continue;
      }
      return {
        path: file.path,
        result: 'failed',
        code: 'UNREACHABLE',
        message: (error as Error).message,
        bytes: file.bytes,
      };
    }
    const body = (await response.json().catch(() => ({}))) as {
      id?: string;
      error?: { code: string; message: string };
    };
    if (response.status === 202) {
      const duplicate = response.headers.get('idempotent-replayed') === 'true';
      return {
        path: file.path,
        result: duplicate ? 'duplicate' : 'accepted',
        id: body.id!,
        bytes: file.bytes,
      };
    }
    // Back off and retry what is temporary: a full queue or a server-side hiccup.
    if ((response.status === 429 || response.status >= 500) && attempt < 6) {
      await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      continue;
    }
    const error = body.error ?? { code: `HTTP_${response.status}`, message: response.statusText };
    return {
      path: file.path,
      result: response.status < 500 ? 'rejected' : 'failed',
      code: error.code,
      message: error.message,
      bytes: file.bytes,
    };
  }
}

export async function upload(client: ApiClient, paths: string[], options: UploadOptions): Promise<number> {
  const files = await collectFiles(paths);
  if (files.length === 0) {
    console.error('No files found under the given paths.');
    return 2;
  }
  const totalBytes = files.reduce((s, f) => s + f.bytes, 0);
  const bar = options.quiet
    ? undefined
    : new cliProgress.SingleBar(
        {
          format:
            'uploading [{bar}] {percentage}% | {value}/{total} files | {mb} MB | {rate} files/s | eta {eta_formatted}',
          hideCursor: true,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
  const started = performance.now();
  let doneBytes = 0;
  bar?.start(files.length, 0, { mb: '0.0', rate: '0.0' });
  const outcomes: Outcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency, files.length) }, async () => {
      while (next < files.length) {
        const file = files[next++]!;
        // A large file's bytes show as they go, so a long tus upload is seen moving.
        let sent = 0;
        const outcome = await uploadOne(client, file, options, (bytes) => {
          doneBytes += bytes - sent;
          sent = bytes;
          bar?.update({ mb: (doneBytes / 1e6).toFixed(1) });
        });
        outcomes.push(outcome);
        doneBytes += file.bytes - sent;
        const seconds = (performance.now() - started) / 1000;
        bar?.increment(1, { mb: (doneBytes / 1e6).toFixed(1), rate: (outcomes.length / seconds).toFixed(1) });
      }
    }),
  );
  bar?.stop();

  const count = (r: Outcome['result']) => outcomes.filter((o) => o.result === r).length;
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `\n${files.length} files, ${(totalBytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s: ` +
      `${count('accepted')} accepted, ${count('duplicate')} duplicate, ${count('rejected')} rejected, ${count('failed')} failed`,
  );
  for (const o of outcomes)
    if (o.result === 'rejected' || o.result === 'failed')
      console.log(`  ${o.result} ${o.path}: ${o.code} ${o.message}`);

  const failedProcessing = options.wait ? await waitForOutcomes(client, outcomes, options.quiet) : 0;
  return count('rejected') + count('failed') + failedProcessing > 0 ? 1 : 0;
}

/**
 * Polls the accepted images until each is processed or failed, with a bar of its own; names each
 * failure by its file (every file, when several had the same bytes) and returns how many failed.
 */
async function waitForOutcomes(client: ApiClient, outcomes: Outcome[], quiet: boolean): Promise<number> {
  const files = new Map<string, string[]>();
  for (const o of outcomes)
    if (o.result === 'accepted' || o.result === 'duplicate')
      files.set(o.id, [...(files.get(o.id) ?? []), o.path]);
  const pending = new Set(files.keys());
  const total = pending.size;
  const failed: Array<{ id: string; code: string; message: string }> = [];
  const bar = quiet
    ? undefined
    : new cliProgress.SingleBar(
        { format: 'processing [{bar}] {value}/{total} images', hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
  bar?.start(total, 0);
  while (pending.size) {
    for (const id of [...pending]) {
      const image = await client.json<{ status: string; error?: { code: string; message: string } }>(
        'GET',
        `/v1/images/${id}`,
      );
      if (image.status === 'processed' || image.status === 'failed') {
        pending.delete(id);
        if (image.status === 'failed')
          failed.push({ id, code: image.error?.code ?? '?', message: image.error?.message ?? '' });
        bar?.increment();
      }
    }
    if (pending.size) await new Promise((r) => setTimeout(r, 500));
  }
  bar?.stop();
  console.log(`${total - failed.length} processed, ${failed.length} failed`);
  for (const f of failed)
    console.log(`  failed ${files.get(f.id)!.join(', ')} (image ${f.id}): ${f.code} ${f.message}`);
  return failed.length;
}
