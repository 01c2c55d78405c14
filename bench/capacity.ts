// What one image costs the platform, per role, on real photos: the inputs of docs/capacity.md.
//
//   npm run bench:capacity -- [FOLDER] [--images 60] [--concurrency 4] [--lake folder|s3]
//
// An api process and a worker process (`imagelake serve --roles api|worker`) share an embedded
// PostgreSQL started here and a lake (a folder, or the S3 server: MinIO unless IMAGELAKE_S3_ENDPOINT
// names another). --images distinct photos of the corpus are uploaded over HTTP, --concurrency at
// a time, and processed. Measured between before and after, and printed per image:
// - CPU milliseconds of the api process, the worker process (its threads included) and PostgreSQL
//   (every backend), from /proc;
// - PostgreSQL transactions, rows written, WAL bytes and the database's growth (pg_stat_database,
//   pg_current_wal_lsn, pg_database_size: what the images' 7 days of catalog rows take);
// - lake requests by operation and bytes written (the processes' imagelake_lake_* metrics);
// - the image's bytes, and the size of its outcome event (what Kafka and webhooks carry).
// The baseline beside it, in the same run: sharp alone doing the image work of one photo (decode
// once to 1280 px, two WebP renditions), its CPU per image, and the worker's CPU as a ratio of it.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import pino from 'pino';
import sharp from 'sharp';
import { connect } from '../src/catalog/database.ts';
import { startEmbeddedPostgres } from '../src/catalog/embedded.ts';
import { eventBody } from '../src/webhooks/events.ts';
import { cpuBetween, cpuSecondsOf, processTree } from './process-tree.ts';
import { s3Settings } from './s3-settings.ts';
import { startServe, stopServe } from './serve-process.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    images: { type: 'string', default: '60' },
    concurrency: { type: 'string', default: '4' },
    lake: { type: 'string', default: 'folder' },
  },
});
const IMAGES = Number(values.images);
const CONCURRENCY = Number(values.concurrency);
const ADMIN = 'il_admin_bench-capacity-0123456789abcdefghijklmn';

const folder =
  positionals[0] ??
  execFileSync('bash', [fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url))], {
    encoding: 'utf8',
  }).trim();
const files = readdirSync(folder, { recursive: true, encoding: 'utf8' })
  .filter((f) => /\.(jpe?g|png)$/i.test(f))
  .sort()
  .map((f) => join(folder, f));
if (files.length === 0) throw new Error(`No photos in ${folder}`);
// Distinct uploads: the corpus cycled, each with a counter after the image's end (decoders ignore it).
const uploads = Array.from({ length: IMAGES }, (_, i) =>
  Buffer.concat([readFileSync(files[i % files.length]!), Buffer.from(`#${i}`)]),
);
const imageBytes = uploads.reduce((n, u) => n + u.length, 0) / IMAGES;

const root = await mkdtemp(join(tmpdir(), 'imagelake-bench-capacity-'));
const postgres = await startEmbeddedPostgres(join(root, 'pg'), pino({ level: 'silent' }));
const { db } = connect(postgres.url);
const lakeEnv =
  values.lake === 's3'
    ? { ...s3Settings(), IMAGELAKE_LAKE_URL: `s3://imagelake/capacity-${randomUUID()}` }
    : { IMAGELAKE_LAKE_URL: `file://${join(root, 'lake')}` };
const env = {
  ...lakeEnv,
  IMAGELAKE_DATABASE_URL: postgres.url,
  IMAGELAKE_MAX_QUEUE_DEPTH: '100000',
};

const servers: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of servers) child.kill('SIGKILL');
});

/** `imagelake serve` with these roles only, in a process of its own: its pid and base URL. */
async function serve(roles: string): Promise<{ pid: number; url: string }> {
  const { child, url } = await startServe(join(root, roles), ADMIN, env, [], [roles]);
  servers.push(child);
  return { pid: child.pid!, url };
}

const api = await serve('api');
const worker = await serve('worker');

/** The lake counters of both processes, summed: requests by operation, bytes by kind. */
async function lakeCounters(): Promise<Map<string, number>> {
  const counters = new Map<string, number>();
  for (const url of [api.url, worker.url]) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const m of text.matchAll(
      /^imagelake_lake_(requests_total|written_bytes_total)\{\w+="(\w+)"\} (\S+)$/gm,
    )) {
      const key = `${m[1] === 'requests_total' ? 'requests' : 'bytes'} ${m[2]}`;
      counters.set(key, (counters.get(key) ?? 0) + Number(m[3]));
    }
  }
  return counters;
}

interface Reading {
  cpu: { api: Map<number, number>; worker: Map<number, number>; postgres: Map<number, number> };
  xacts: number;
  rows: number;
  size: number;
  wal: bigint;
  lake: Map<string, number>;
}

async function read(): Promise<Reading> {
  const stats = (
    await sql<{ xacts: string; rows: string; size: string; lsn: string }>`
      select (xact_commit + xact_rollback)::text as xacts,
             (tup_inserted + tup_updated + tup_deleted)::text as rows,
             pg_database_size(current_database())::text as size,
             pg_current_wal_lsn()::text as lsn
        from pg_stat_database where datname = current_database()`.execute(db)
  ).rows[0]!;
  const [high, low] = stats.lsn.split('/').map((h) => BigInt(`0x${h}`));
  return {
    cpu: {
      api: cpuSecondsOf(processTree(api.pid)),
      worker: cpuSecondsOf(processTree(worker.pid)),
      // This process's other children: the embedded PostgreSQL and its backends.
      postgres: (() => {
        const pids = processTree(process.pid, [api.pid, worker.pid]);
        pids.delete(process.pid);
        return cpuSecondsOf(pids);
      })(),
    },
    xacts: Number(stats.xacts),
    rows: Number(stats.rows),
    size: Number(stats.size),
    wal: (high! << 32n) + low!,
    lake: await lakeCounters(),
  };
}

async function call<T>(method: string, path: string, key: string, body?: unknown): Promise<T> {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return (await response.json()) as T;
}

/** Sharp alone, the baseline: CPU seconds of this process per image for the same image work. */
async function bareSharp(): Promise<number> {
  const before = process.cpuUsage();
  for (const upload of uploads.slice(0, Math.min(IMAGES, 20))) {
    const decoded = await sharp(upload)
      .rotate()
      .resize(1280, 1280, { fit: 'inside', withoutEnlargement: true })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const { width, height, channels } = decoded.info;
    const again = () => sharp(decoded.data, { raw: { width, height, channels } });
    await Promise.all([
      again().webp().toBuffer(),
      again().resize(256, 256, { fit: 'inside' }).webp().toBuffer(),
    ]);
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6 / Math.min(IMAGES, 20);
}

try {
  const customer = await call<{ apiKey: string }>('POST', '/v1/customers', ADMIN, { name: 'Capacity' });
  const before = await read();
  const started = performance.now();
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < IMAGES; i = next++) {
        const response = await fetch(`${api.url}/v1/images`, {
          method: 'POST',
          headers: { authorization: `Bearer ${customer.apiKey}` },
          body: new Uint8Array(uploads[i]!),
        });
        const body = (await response.json()) as { id: string };
        if (response.status !== 202)
          throw new Error(`upload ${i}: ${response.status} ${JSON.stringify(body)}`);
        ids.push(body.id);
      }
    }),
  );
  for (;;) {
    const left = Number((await sql<{ n: string }>`select count(*) as n from jobs`.execute(db)).rows[0]!.n);
    if (process.stdout.isTTY) process.stdout.write(`\r${IMAGES - left}/${IMAGES} processed`);
    if (left === 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const seconds = (performance.now() - started) / 1000;
  // The last outcome's statistics land with it; the counters are read once every process is idle.
  await new Promise((r) => setTimeout(r, 1000));
  const after = await read();
  if (process.stdout.isTTY) process.stdout.write('\n');

  const image = await call<Record<string, unknown>>('GET', `/v1/images/${ids[0]}`, customer.apiKey);
  const event = Buffer.byteLength(eventBody('image.processed', new Date(), image));
  const per = (n: number) => n / IMAGES;
  const ms = (role: keyof Reading['cpu']) => per(cpuBetween(before.cpu[role], after.cpu[role])) * 1000;
  const lake: Record<string, string> = {};
  for (const [key, value] of after.lake) {
    const delta = per(value - (before.lake.get(key) ?? 0));
    if (delta > 0) lake[key] = key.startsWith('bytes') ? `${(delta / 1e6).toFixed(2)} MB` : delta.toFixed(2);
  }
  const sharpMs = (await bareSharp()) * 1000;
  const workerMs = ms('worker');
  console.log(
    `${IMAGES} photos (mean ${(imageBytes / 1e6).toFixed(2)} MB), ${values.lake} lake, ${CONCURRENCY} uploads at a time: ${seconds.toFixed(1)} s, ${(IMAGES / seconds).toFixed(2)} images/s`,
  );
  console.table({
    'CPU ms per image': {
      api: +ms('api').toFixed(1),
      worker: +workerMs.toFixed(1),
      postgres: +ms('postgres').toFixed(1),
    },
  });
  console.table({
    'PostgreSQL per image': {
      transactions: +per(after.xacts - before.xacts).toFixed(1),
      'rows written': +per(after.rows - before.rows).toFixed(1),
      'WAL KB': +(Number(after.wal - before.wal) / IMAGES / 1024).toFixed(1),
      'database growth KB': +((after.size - before.size) / IMAGES / 1024).toFixed(1),
    },
  });
  console.table({ 'lake per image': lake });
  console.log(`outcome event: ${event} bytes (one Kafka message, and the body of each webhook delivery)`);
  console.log(
    `baseline, sharp alone on the same photos: ${sharpMs.toFixed(0)} CPU ms per image; the worker uses ${(workerMs / sharpMs).toFixed(2)}x that`,
  );
} finally {
  await Promise.all(servers.map(stopServe));
  await db.destroy();
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
