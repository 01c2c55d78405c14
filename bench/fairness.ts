// Fair processing: a small customer's time from upload to processed, on an idle server and while
// other customers' backfills of real photos wait in the queue, in one run on embedded defaults.
//
//   node bench/fairness.ts [FOLDER] [--limit 2000] [--small 5] [--smallest] [--workers 1]
//                          [--phases bulk,interactive,kafka,reprocess]
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh (drawn images when there is none);
// its photos are sent again and again up to --limit. With --workers 1 (the default) one server runs
// every role in this process, on its embedded catalog: what a newcomer gets. With --workers N the
// bench starts an embedded PostgreSQL, serves the api, kafka and scheduler roles here and spawns N
// `imagelake serve --roles worker` processes.
//
// First the small customer uploads --small photos one after another, each timed to processed (idle).
// Then each phase adds a backfill of --limit photos, which is not waited for (the backlogs pile up),
// and the small customer's photos are timed again:
//   bulk         customer "Bulk" over HTTP with `Imagelake-Priority: bulk`
//   interactive  customer "Backfill" over HTTP as ordinary uploads (the same priority as the small one's)
//   kafka        customer "Stream" from a Kafka topic (interactive, the default); needs a broker:
//                IMAGELAKE_KAFKA_BROKERS, or the one scripts/services/kafka runs (skipped otherwise)
//   reprocess    a reprocess run of the processor "trivial" over every processed image (bulk)
// Each phase prints the ratio to idle (aim: at most 2) and how much of its backfill was still
// waiting when the small customer's last photo was done (the backlog had not drained).
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Admin, Producer } from '@platformatic/kafka';
import pino from 'pino';
import sharp from 'sharp';
import { startEmbeddedPostgres } from '../src/catalog/embedded.ts';
import { loadConfig } from '../src/config/config.ts';
import { startServer } from '../src/server.ts';
import { listImages } from './corpus.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    limit: { type: 'string', default: '2000' },
    small: { type: 'string', default: '5' },
    smallest: { type: 'boolean' },
    workers: { type: 'string', default: '1' },
    phases: { type: 'string', default: 'bulk,interactive,kafka,reprocess' },
  },
});
const WORKERS = Number(values.workers);
const PHASES = values.phases.split(',');
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
const log = pino({ level: 'warn' });

/** A running broker: the configured one, or the one scripts/services/kafka runs; none skips the phase. */
function broker(): string | undefined {
  if (process.env.IMAGELAKE_KAFKA_BROKERS) return process.env.IMAGELAKE_KAFKA_BROKERS;
  const script = fileURLToPath(new URL('../scripts/services/kafka', import.meta.url));
  if (spawnSync('bash', [script, 'status'], { stdio: 'ignore' }).status !== 0) return undefined;
  return execFileSync('bash', [script, 'env'], { encoding: 'utf8' }).trim().split('=')[1];
}
const kafka = PHASES.includes('kafka') ? broker() : undefined;
const topic = `bench-fairness-${Date.now()}`;
if (kafka) {
  const admin = new Admin({ clientId: 'bench', bootstrapBrokers: [kafka] });
  await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 });
  await admin.close();
}

const settings: Record<string, string> = {
  // The worker settings may be tried from the environment (IMAGELAKE_WORKER_CONCURRENCY: images in flight).
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('IMAGELAKE_WORKER_'))),
  IMAGELAKE_DATA_DIR: dataDir,
  IMAGELAKE_ADMIN_TOKEN: ADMIN,
  IMAGELAKE_PROCESSORS: fileURLToPath(new URL('processors/trivial.ts', import.meta.url)),
  ...(kafka ? { IMAGELAKE_KAFKA_BROKERS: kafka, IMAGELAKE_KAFKA_TOPICS: topic } : {}),
};
const workers: ChildProcess[] = [];
const postgres = WORKERS > 1 ? await startEmbeddedPostgres(join(dataDir, 'catalog'), log, 0) : undefined;
if (postgres) settings.IMAGELAKE_DATABASE_URL = postgres.url;
const server = await startServer(loadConfig({ ...settings, IMAGELAKE_PORT: '0' }), {
  log,
  ...(postgres ? { roles: ['api', 'kafka', 'scheduler'] as const } : {}),
});
const url = server.url!;
for (let i = 0; postgres && i < WORKERS; i++) {
  const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  workers.push(
    spawn(process.execPath, [main, 'serve', '--roles', 'worker'], {
      env: { ...process.env, ...settings, IMAGELAKE_PORT: '0', IMAGELAKE_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
}

interface Answer {
  id: string;
  apiKey: string;
  status: string;
  total?: number;
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
  const response = await fetch(`${url}/v1/images`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', ...headers },
    body: new Uint8Array(bytes),
  });
  const body = (await response.json()) as { id?: string; error?: { code: string } };
  if (response.status === 202) return body.id!;
  throw new Error(`upload answered ${response.status}: ${JSON.stringify(body)}`);
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
 * come after it, and a median would hide that). Any refusal of its uploads ends the run.
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

/** Lands a backfill over HTTP, four uploads at a time as `imagelake upload` does. */
async function backfill(key: string, headers: Record<string, string>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < LIMIT) await post(key, images[next++ % images.length]!, headers);
    }),
  );
}

/** Produces a backfill to the Kafka topic and waits until the consumer has landed all of it. */
async function streamBackfill(customerId: string): Promise<void> {
  const producer = new Producer({ clientId: 'bench', bootstrapBrokers: [kafka!], acks: -1 });
  // One photo per request: a batch of large photos passes the broker's request size.
  const fits = images.filter((image) => image.length <= 9 * 1024 * 1024);
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = next++; i < LIMIT; i = next++)
        await producer.send({
          messages: [
            {
              topic,
              value: fits[i % fits.length]!,
              headers: new Map([
                [Buffer.from('customer-id'), Buffer.from(customerId)],
                [Buffer.from('message-id'), Buffer.from(`fair-${i}`)],
              ]),
            },
          ],
        });
    }),
  );
  await producer.close();
  while ((await usageOf(customerId)).imagesReceived < LIMIT) await new Promise((r) => setTimeout(r, 500));
}

/** A customer's images still waiting in the queue (admin's view of the queue). */
async function waitingOf(customerId: string): Promise<number> {
  const queue = (await call(ADMIN, 'GET', '/v1/queue?top=100')) as unknown as {
    customers: Array<{ customerId: string; waiting: number }>;
  };
  return queue.customers.find((c) => c.customerId === customerId)?.waiting ?? 0;
}

/** Today's usage of a customer (images received so far). */
async function usageOf(customerId: string): Promise<{ imagesReceived: number }> {
  const day = new Date().toISOString().slice(0, 10);
  const usage = (await call(
    ADMIN,
    'GET',
    `/v1/usage?from=${day}&to=${day}&customerId=${customerId}`,
  )) as unknown as {
    rows: Array<{ imagesReceived: number }>;
  };
  return { imagesReceived: usage.rows.reduce((n, d) => n + d.imagesReceived, 0) };
}

const results: Array<[string, number]> = [];
try {
  const small = await call(ADMIN, 'POST', '/v1/customers', { name: 'Small' });
  const kb = smallPhotos.map((p) => Math.round(p.length / 1024)).join(', ');
  console.log(
    `backfills of ${LIMIT} from ${from}; ${WORKERS} worker process${WORKERS > 1 ? 'es' : ''}; the small customer sends ${SMALL} (${kb} KiB), one at a time`,
  );
  const idle = await smallCustomerLatency(small.apiKey);
  console.log(`idle: small customer's mean time to processed ${(idle / 1000).toFixed(2)} s`);

  for (const phase of PHASES) {
    const name = { bulk: 'Bulk', interactive: 'Backfill', kafka: 'Stream', reprocess: 'Reprocess' }[phase];
    if (!name) throw new Error(`unknown phase ${phase}`);
    if (phase === 'kafka' && !kafka) {
      console.log('kafka: skipped (no broker: start scripts/services/kafka or set IMAGELAKE_KAFKA_BROKERS)');
      continue;
    }
    const customer = await call(ADMIN, 'POST', '/v1/customers', { name });
    let backlog = `${LIMIT}`;
    if (phase === 'bulk') await backfill(customer.apiKey, { 'imagelake-priority': 'bulk' });
    if (phase === 'interactive') await backfill(customer.apiKey, {});
    if (phase === 'kafka') await streamBackfill(customer.id);
    if (phase === 'reprocess') {
      const run = await call(ADMIN, 'POST', '/v1/reprocess', { processor: 'trivial', force: true });
      backlog = `a run over ${run.total} processed images`;
    }
    const latency = await smallCustomerLatency(small.apiKey);
    const left = phase === 'reprocess' ? undefined : await waitingOf(customer.id);
    results.push([phase, latency / idle]);
    console.log(
      `under a ${phase} backfill (${backlog}): ${(latency / 1000).toFixed(2)} s${left === undefined ? '' : ` (${left} of its ${LIMIT} still waiting at the end)`}`,
    );
  }
  for (const [phase, ratio] of results)
    console.log(`ratio under ${phase} backfill / idle: ${ratio.toFixed(2)} (aim: at most 2)`);
} finally {
  for (const child of workers) child.kill('SIGTERM');
  await Promise.all(
    workers.map((c) => new Promise((r) => (c.exitCode === null ? c.once('exit', r) : r(null)))),
  );
  await server.stop();
  await postgres?.stop();
  await rm(dataDir, { recursive: true, force: true });
}
