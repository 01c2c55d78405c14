// Fair processing: a small customer's time from upload to processed, on an idle server and while
// another customer's backfill of real photos waits in the queue, in one run on embedded defaults.
//
//   node bench/fairness.ts [FOLDER] [--limit 2000] [--small 5] [--smallest]
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh (drawn images when there is none).
// Three phases on one server (api and worker in one process, the defaults a newcomer gets):
//   1. idle: the small customer uploads --small photos one after another; each is timed to processed.
//   2. bulk backfill: customer "Bulk" uploads --limit photos with `Imagelake-Priority: bulk`, then the
//      small customer uploads again, timed the same way.
//   3. interactive backfill: customer "Backfill" uploads --limit photos as ordinary uploads (the
//      worst case: same priority as the small customer's), then the small customer again.
// The ratios backfill/idle are printed (aim: at most 2); and how much of each backfill was still
// waiting when the small customer's last image was done, to show the backlog had not drained.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import sharp from 'sharp';
import { loadConfig } from '../src/config/config.ts';
import { startServer } from '../src/server.ts';
import { listImages } from './corpus.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    limit: { type: 'string', default: '2000' },
    small: { type: 'string', default: '5' },
    smallest: { type: 'boolean' },
  },
});
const LIMIT = Number(values.limit);
const SMALL = Number(values.small);
const ADMIN = 'il_admin_bench-fairness-0123456789abcdefghijklmnop';

function corpus(): string | undefined {
  if (positionals[0]) return positionals[0];
  const script = fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url));
  if (!existsSync(script)) return undefined;
  return execFileSync('bash', [script], { encoding: 'utf8' }).trim();
}

async function photos(): Promise<{ from: string; images: Buffer[] }> {
  const folder = corpus();
  if (folder) {
    const files = listImages(folder);
    if (files.length > 0)
      return { from: `${files.length} photos in ${folder}`, images: files.map((f) => readFileSync(f)) };
  }
  const drawn = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      sharp({
        create: { width: 2000, height: 1500, channels: 3, background: { r: i * 12, g: 90, b: 200 - i * 9 } },
      })
        .composite([
          {
            input: Buffer.from(
              `<svg width="2000" height="1500"><circle cx="${600 + i * 40}" cy="700" r="400" fill="white"/></svg>`,
            ),
          },
        ])
        .jpeg({ quality: 85 })
        .toBuffer(),
    ),
  );
  return { from: '20 drawn 2000x1500 JPEGs (no corpus found)', images: drawn };
}

const { from, images } = await photos();
// The small customer's photos: typical ones (around the corpus's median size, or its smallest with
// --smallest), the same in every phase.
const bySize = [...images].sort((a, b) => a.length - b.length);
const middle = values.smallest ? 0 : Math.max(0, Math.floor(bySize.length / 2) - Math.floor(SMALL / 2));
const smallPhotos = bySize.slice(middle, middle + SMALL);

const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-fairness-'));
const server = await startServer(
  loadConfig({
    // The worker settings may be tried from the environment (IMAGELAKE_WORKER_CONCURRENCY: images in flight).
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('IMAGELAKE_WORKER_'))),
    IMAGELAKE_DATA_DIR: dataDir,
    IMAGELAKE_PORT: '0',
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
  }),
  { log: pino({ level: 'warn' }) },
);
const url = server.url!;

interface Answer {
  id: string;
  apiKey: string;
  status: string;
  error?: { code: string };
}

async function call(key: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return (await response.json()) as Answer;
}

async function post(key: string, bytes: Buffer, headers: Record<string, string> = {}): Promise<string> {
  for (;;) {
    const response = await fetch(`${url}/v1/images`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', ...headers },
      body: new Uint8Array(bytes),
    });
    const body = (await response.json()) as { id?: string; error?: { code: string } };
    if (response.status === 202) return body.id!;
    throw new Error(`upload answered ${response.status}: ${JSON.stringify(body)}`);
  }
}

async function processed(key: string, id: string): Promise<void> {
  for (;;) {
    const image = await call(key, 'GET', `/v1/images/${id}`);
    if (image.status === 'processed') return;
    if (image.status === 'failed') throw new Error(`image ${id} failed: ${image.error?.code}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The small customer's photos, one after another; the mean time from upload to processed (a mean,
 * not a median: with oldest-first claims the first photo waits for the whole backlog and the rest
 * come after it, and a median would hide that).
 */
async function smallCustomerLatency(key: string): Promise<number> {
  let total = 0;
  for (const photo of smallPhotos) {
    const started = performance.now();
    await processed(key, await post(key, photo));
    total += performance.now() - started;
  }
  return total / smallPhotos.length;
}

/** Lands a backfill, four uploads at a time as `imagelake upload` does; returns its image ids. */
async function backfill(key: string, headers: Record<string, string>): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < LIMIT) {
        const i = next++;
        ids.push(await post(key, images[i % images.length]!, headers));
      }
    }),
  );
  return ids;
}

async function waiting(key: string, ids: string[]): Promise<number> {
  let count = 0;
  for (const id of ids) if ((await call(key, 'GET', `/v1/images/${id}`)).status !== 'processed') count++;
  return count;
}

try {
  const small = await call(ADMIN, 'POST', '/v1/customers', { name: 'Small' });
  const bulk = await call(ADMIN, 'POST', '/v1/customers', { name: 'Bulk' });
  const big = await call(ADMIN, 'POST', '/v1/customers', { name: 'Backfill' });
  const kb = smallPhotos.map((p) => Math.round(p.length / 1024)).join(', ');
  console.log(
    `backfills of ${LIMIT} from ${from}; the small customer sends ${SMALL} (${kb} KiB), one at a time`,
  );

  const idle = await smallCustomerLatency(small.apiKey);
  console.log(`idle: small customer's mean time to processed ${(idle / 1000).toFixed(2)} s`);

  const bulkIds = await backfill(bulk.apiKey, { 'imagelake-priority': 'bulk' });
  const underBulk = await smallCustomerLatency(small.apiKey);
  const bulkLeft = await waiting(bulk.apiKey, bulkIds);
  console.log(
    `under a bulk backfill: ${(underBulk / 1000).toFixed(2)} s (${bulkLeft} of ${LIMIT} backfill images still not processed at the end)`,
  );

  const bigIds = await backfill(big.apiKey, {});
  const underBackfill = await smallCustomerLatency(small.apiKey);
  const bigLeft = await waiting(big.apiKey, bigIds);
  console.log(
    `under an interactive backfill: ${(underBackfill / 1000).toFixed(2)} s (${bigLeft} of ${LIMIT} backfill images still not processed at the end)`,
  );

  console.log(`ratio under bulk backfill / idle: ${(underBulk / idle).toFixed(2)} (aim: at most 2)`);
  console.log(
    `ratio under interactive backfill / idle: ${(underBackfill / idle).toFixed(2)} (aim: at most 2)`,
  );
} finally {
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
}
