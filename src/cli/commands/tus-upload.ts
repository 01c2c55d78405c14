import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import * as tus from 'tus-js-client';
import type { ApiClient } from '../client.ts';

/** Files larger than this go over tus by default, so a broken connection costs one chunk, not the file. */
export const TUS_OVER_DEFAULT = 16 * 1024 * 1024;
/** Bytes per PATCH: what a break can cost, and how often progress is known. */
const CHUNK_BYTES = 8 * 1024 * 1024;
/** Waits before each retry of a broken request; then the file is counted as failed (and resumes next run). */
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10_000, 20_000];

/**
 * Where the CLI remembers unfinished uploads between runs: $XDG_CACHE_HOME/imagelake (else
 * ~/.cache/imagelake)/tus-uploads.json, a small JSON file of upload URLs by fingerprint (tus-js-client's
 * FileUrlStorage). Safe to delete: the next run starts those files over.
 */
export function defaultTusStatePath(env: Record<string, string | undefined> = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'imagelake', 'tus-uploads.json');
}

// tus-js-client ships FileUrlStorage for Node but does not declare it in its types.
const { FileUrlStorage } = tus as unknown as { FileUrlStorage: new (path: string) => tus.UrlStorage };

export type TusOutcome =
  | { result: 'accepted' | 'duplicate'; id: string }
  | { result: 'rejected' | 'failed'; code: string; message: string };

/**
 * Sends one file with tus-js-client: resumes an upload of the same bytes to the same server and key
 * found in the state file (after the CLI itself was stopped), retries a broken connection from the
 * offset the server kept, and reports the bytes sent as they go.
 */
export async function tusUploadOne(
  client: ApiClient,
  key: string,
  file: { path: string; bytes: number; sha256: string },
  options: { bulk: boolean; statePath: string; onBytes: (sent: number) => void },
): Promise<TusOutcome> {
  await mkdir(dirname(options.statePath), { recursive: true });
  // FileUrlStorage locks the file, which must exist for that.
  await writeFile(options.statePath, '', { flag: 'a' });
  // The same bytes, to the same server, for the same key: another key's upload would be 404 anyway.
  const fingerprint = createHash('sha256')
    .update(`${client.baseUrl}\n${createHash('sha256').update(key).digest('hex')}\n${file.sha256}`)
    .digest('hex');
  return new Promise((resolve) => {
    let imageId: string | undefined;
    let duplicate = false;
    const upload = new tus.Upload(createReadStream(file.path), {
      endpoint: `${client.baseUrl}/v1/tus`,
      headers: { authorization: `Bearer ${key}`, ...(options.bulk ? { 'imagelake-priority': 'bulk' } : {}) },
      metadata: { filename: basename(file.path), idempotencyKey: file.sha256 },
      uploadSize: file.bytes,
      chunkSize: CHUNK_BYTES,
      retryDelays: RETRY_DELAYS,
      urlStorage: new FileUrlStorage(options.statePath),
      fingerprint: async () => fingerprint,
      removeFingerprintOnSuccess: true,
      onProgress: (sent) => options.onBytes(sent),
      onAfterResponse: (_request, response) => {
        imageId = response.getHeader('Imagelake-Image-Id') ?? imageId;
        if (response.getHeader('Idempotent-Replayed') === 'true') duplicate = true;
      },
      onSuccess: () =>
        resolve(
          imageId
            ? { result: duplicate ? 'duplicate' : 'accepted', id: imageId }
            : {
                result: 'failed',
                code: 'NO_IMAGE_ID',
                message: 'The upload ended without naming its image.',
              },
        ),
      onError: (error) => {
        const response = (error as tus.DetailedError).originalResponse;
        const status = response?.getStatus() ?? 0;
        let refusal: { code?: string; message?: string } = {};
        try {
          refusal = JSON.parse(response?.getBody() ?? '').error ?? {};
        } catch {}
        resolve({
          result: status >= 400 && status < 500 && status !== 423 ? 'rejected' : 'failed',
          code: refusal.code ?? (status ? `HTTP_${status}` : 'UNREACHABLE'),
          message: refusal.message ?? error.message,
        });
      },
    });
    upload
      .findPreviousUploads()
      .then((previous) => {
        if (previous[0]) upload.resumeFromPreviousUpload(previous[0]);
        upload.start();
      })
      .catch(() => upload.start());
  });
}
