import * as tus from 'tus-js-client';
import type { Clock } from '../../src/clock.ts';
import type { Lake } from '../../src/lake/port.ts';
import { audit, type Finding } from '../../src/retention/audit.ts';
import type { RunningServer } from '../../src/server.ts';
import { DAY } from './harness.ts';

export interface TusRun {
  /** The upload's URL, to resume it or ask HEAD. */
  url: string;
  /** Imagelake-Image-Id of the answer that finished it (undefined when it did not finish). */
  imageId: string | undefined;
  /** The status of the refusal that ended it, when one did. */
  refusedWith: number | undefined;
  /** The refusal's body. */
  refusal: string | undefined;
  /** Bytes the client counted as sent when it stopped (aborted or failed). */
  sent: number;
}

/**
 * Sends `bytes` with tus-js-client, as a customer's program would: creates the upload (or resumes
 * `uploadUrl` from the server's offset), and stops by itself once `stopAt` of the bytes are sent,
 * when asked to (or calls `onHalf` there, to kill the server instead). No retries: each test says
 * what happens next.
 */
export function tusSend(
  endpoint: string,
  key: string,
  bytes: Buffer,
  options: {
    uploadUrl?: string;
    stopAt?: number;
    onStop?: () => void;
    metadata?: Record<string, string>;
    chunkSize?: number;
  } = {},
): Promise<TusRun> {
  return new Promise((resolve) => {
    let imageId: string | undefined;
    let sent = 0;
    let stopped = false;
    const upload: tus.Upload = new tus.Upload(bytes, {
      endpoint: `${endpoint}/v1/tus`,
      uploadUrl: options.uploadUrl ?? null,
      headers: { authorization: `Bearer ${key}` },
      metadata: options.metadata ?? { filename: 'photo.jpg', contentType: 'image/jpeg' },
      retryDelays: null,
      ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
      onProgress: (bytesSent, total) => {
        sent = bytesSent;
        if (options.stopAt !== undefined && !stopped && bytesSent >= total * options.stopAt) {
          stopped = true;
          if (options.onStop) options.onStop();
          else
            upload
              .abort()
              .then(() =>
                resolve({ url: upload.url!, imageId, refusedWith: undefined, refusal: undefined, sent }),
              );
        }
      },
      onAfterResponse: (_req, res) => {
        imageId = res.getHeader('Imagelake-Image-Id') ?? imageId;
      },
      onSuccess: () =>
        resolve({ url: upload.url!, imageId, refusedWith: undefined, refusal: undefined, sent }),
      onError: (error) => {
        const response = (error as tus.DetailedError).originalResponse;
        resolve({
          url: upload.url!,
          imageId,
          refusedWith: response?.getStatus(),
          refusal: response?.getBody(),
          sent,
        });
      },
    });
    upload.start();
  });
}

/** HEAD on an upload URL, as a client resuming would. */
export async function tusHead(url: string, key: string): Promise<Response> {
  return fetch(url, {
    method: 'HEAD',
    headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' },
  });
}

/** PATCH bytes at an offset, as a client writing an upload would. */
export async function tusPatch(
  url: string,
  key: string,
  offset: number,
  body: Uint8Array<ArrayBuffer>,
): Promise<Response> {
  return fetch(url, {
    method: 'PATCH',
    headers: {
      authorization: `Bearer ${key}`,
      'tus-resumable': '1.0.0',
      'upload-offset': String(offset),
      'content-type': 'application/offset+octet-stream',
    },
    body,
  });
}

/** The keys in the lake's tus/ folder. */
export async function tusObjects(lake: Lake): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of lake.list('tus/')) keys.push(object.key);
  return keys;
}

/** The audit's findings about the tus/ folder, read from the storage as `imagelake retention audit` does. */
export async function tusFindings(server: RunningServer, clock: Clock): Promise<Finding[]> {
  const report = await audit({
    db: server.db,
    lake: server.lake,
    clock,
    retentionMs: 7 * DAY,
    statsRetentionMs: 400 * DAY,
  });
  return report.findings.filter((f) => f.subject.startsWith('tus/'));
}
