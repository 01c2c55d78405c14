// The retention purge of a large expired backlog, and a bare delete of as many objects beside it.
//
//   npm run bench:purge -- [--images 1000000] [--lake folder|s3] [--runs 1] [--customers 20]
//
// Each run makes an embedded catalog and a lake of its own, fills them with an expired backlog
// (bench/purge-backlog.ts says how it matches what the product writes), then starts a server
// process that runs the real purge (the scheduler's purgeExpired) once and reports its wall time,
// images/s, objects/s and peak RSS: the Node process's own (getrusage) and its PostgreSQL's (the
// sum of the processes' proportional set sizes, sampled each second). It then checks that no image
// row and no lake object is left, that the receipts count exactly the images and objects made,
// and that the receipt chain verifies. The baseline, in the same run: as many objects of the same
// layout deleted by a bare loop (unlink on the folder lake; DeleteObjects of 1000 keys on S3) at the
// purge's own concurrency.
//
// S3 is the project's MinIO (scripts/services/s3, started if need be) or the one in
// IMAGELAKE_S3_ENDPOINT, under a prefix of its own that the purge leaves empty.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import pino from 'pino';
import { loadConfig } from '../src/config/config.ts';
import { IMAGE_AREAS } from '../src/lake/object-keys.ts';
import { s3ClientConfig } from '../src/lake/s3.ts';
import { listReceipts, verifyReceipts } from '../src/retention/receipts.ts';
import { startServer } from '../src/server.ts';
import {
  type Backlog,
  bareFolderDelete,
  eachIndex,
  insertCatalogRows,
  OBJECTS_PER_IMAGE,
  objectKeys,
  seedCustomers,
  writeFolderObjects,
  writeLakeObjects,
} from './purge-backlog.ts';
import { s3Settings } from './s3-settings.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string' },
    lake: { type: 'string' },
    runs: { type: 'string' },
    customers: { type: 'string' },
    child: { type: 'string' },
  },
});
const IMAGES = Number(values.images ?? 1_000_000);
const LAKE = values.lake ?? 'folder';
const RUNS = Number(values.runs ?? 1);
const CUSTOMERS = Number(values.customers ?? 20);
/** How many objects the generator and the bare baseline write or delete at once. */
const WRITE_CONCURRENCY = 64;
/** The purge's own delete concurrency (src/retention/runs.ts), which the bare baseline matches. */
const DELETE_CONCURRENCY = LAKE === 's3' ? 8 : 32;
const DAY = 86_400_000;

function serverEnv(dataDir: string, lakeUrl: string | undefined, s3: Record<string, string>) {
  return {
    ...s3,
    IMAGELAKE_DATA_DIR: dataDir,
    IMAGELAKE_ADMIN_TOKEN: 'il_admin_bench',
    // Generating a million rows in one statement outlasts the server's 60 s cap for requests.
    IMAGELAKE_DATABASE_STATEMENT_TIMEOUT: '1h',
    ...(lakeUrl ? { IMAGELAKE_LAKE_URL: lakeUrl } : {}),
  };
}

async function timed<T>(label: string, work: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const started = performance.now();
  process.stdout.write(`  ${label}... `);
  const value = await work();
  const seconds = (performance.now() - started) / 1000;
  console.log(`${seconds.toFixed(1)} s`);
  return { value, seconds };
}

/** The processes below `pid` (its PostgreSQL and that one's backends), from /proc. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {}
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      found.push(c);
      walk(c);
    }
  };
  walk(pid);
  return found;
}

/** The proportional set size of these processes together (shared memory counted once), in bytes. */
function pssOf(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      kb += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {}
  }
  return kb * 1024;
}

/** CPU seconds of these processes (and of the children they reaped), from /proc. */
function cpuOf(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {}
  }
  return ticks / 100;
}

interface ChildResult {
  rssAtStartBytes: number;
  nodeCpuSeconds: number;
  postgresCpuSeconds: number;
  seconds: number;
  peakRssBytes: number;
  peakPostgresPssBytes: number;
  imagesLeft: number;
  receipts: number;
  deleted: Record<string, number>;
  subjects: number;
  chainOk: boolean;
}

/** The server process: runs the purge once, measures it, checks what it left and what it signed. */
async function child(env: Record<string, string>): Promise<void> {
  const server = await startServer(loadConfig(env), { roles: [], log: pino({ level: 'warn' }) });
  const before = (await listReceipts(server.db, { limit: 1 }))[0]?.seq ?? 0;
  // Sampling costs this process some CPU: the process list is read once (PostgreSQL's backends are
  // the pool's, which stay), the few PostgreSQL processes' sizes each two seconds.
  let peakPostgres = 0;
  const postgres = descendants(process.pid);
  const sampler = setInterval(() => {
    peakPostgres = Math.max(peakPostgres, pssOf(postgres));
  }, 2000);
  const rssAtStart = process.memoryUsage().rss;
  const cpuBefore = { node: process.cpuUsage(), postgres: cpuOf(descendants(process.pid)) };
  const started = performance.now();
  await server.purgeNow();
  const seconds = (performance.now() - started) / 1000;
  const nodeCpu = process.cpuUsage(cpuBefore.node);
  const postgresCpuSeconds = cpuOf(descendants(process.pid)) - cpuBefore.postgres;
  clearInterval(sampler);
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  const { rows } = await sql<{ n: string }>`select count(*) as n from images`.execute(server.db);
  const receipts = (await listReceipts(server.db, { limit: 100_000 })).filter(
    (r) => r.seq > before && r.body.kind === 'retention',
  );
  const deleted: Record<string, number> = {};
  for (const r of receipts)
    for (const [kind, c] of Object.entries(r.body.deleted)) deleted[kind] = (deleted[kind] ?? 0) + c.count;
  const result: ChildResult = {
    rssAtStartBytes: rssAtStart,
    nodeCpuSeconds: (nodeCpu.user + nodeCpu.system) / 1e6,
    postgresCpuSeconds,
    seconds,
    peakRssBytes,
    peakPostgresPssBytes: peakPostgres,
    imagesLeft: Number(rows[0]!.n),
    receipts: receipts.length,
    deleted,
    subjects: receipts.reduce((n, r) => n + r.body.subjects.length, 0),
    chainOk: (await verifyReceipts(server.db)).ok,
  };
  await server.stop();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function runChild(env: Record<string, string>): Promise<ChildResult> {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(env)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
  });
  const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
  if (code !== 0) throw new Error(`the purge process exited with ${code}`);
  return JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult;
}

/** Files left under a folder. */
async function filesUnder(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).length;
}

async function s3Keys(client: S3Client, bucket: string, prefix: string): Promise<number> {
  let n = 0;
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    n += page.KeyCount ?? 0;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return n;
}

async function oneRun(run: number, s3: Record<string, string>) {
  console.log(`run ${run}: ${IMAGES} expired images on the ${LAKE} lake`);
  const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-purge-'));
  const bucket = 'imagelake';
  const prefix = `bench-purge-${randomBytes(4).toString('hex')}`;
  const env = serverEnv(dataDir, LAKE === 's3' ? `s3://${bucket}/${prefix}` : undefined, s3);
  const backlog: Backlog = {
    images: IMAGES,
    customers: [],
    // Landed 15 to 8 days ago: past the default 7-day window, over eight day partitions.
    startMs: Date.now() - 15 * DAY,
    stepMs: Math.max(1, Math.floor((7 * DAY) / IMAGES)),
  };
  const server = await startServer(loadConfig(env), { roles: [], log: pino({ level: 'warn' }) });
  await timed('generating the catalog rows', async () => {
    backlog.customers = await seedCustomers(server.db, CUSTOMERS);
    for (let first = 0; first < IMAGES; first += 100_000)
      await insertCatalogRows(server.db, backlog, first, Math.min(100_000, IMAGES - first));
    await sql`vacuum analyze`.execute(server.db);
  });
  const lakeRoot = join(dataDir, 'lake');
  const all = { first: 0, count: IMAGES, concurrency: WRITE_CONCURRENCY };
  await timed(`writing ${IMAGES * OBJECTS_PER_IMAGE} objects`, () =>
    LAKE === 's3' ? writeLakeObjects(server.lake, backlog, all) : writeFolderObjects(lakeRoot, backlog, all),
  );
  await server.stop();

  const result = await runChild(env);
  const objects = IMAGES * OBJECTS_PER_IMAGE;
  // Printed at once: the baseline below takes as long again.
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;
  console.log(
    `  purge: ${result.seconds.toFixed(1)} s, ${(IMAGES / result.seconds).toFixed(0)} images/s, ` +
      `${(objects / result.seconds).toFixed(0)} objects/s; peak RSS ${mb(result.peakRssBytes)} (node; ${mb(result.rssAtStartBytes)} when started), ` +
      `${mb(result.peakPostgresPssBytes)} (PostgreSQL, PSS); CPU ${result.nodeCpuSeconds.toFixed(0)} s (node), ` +
      `${result.postgresCpuSeconds.toFixed(0)} s (PostgreSQL)`,
  );
  const client = new S3Client(
    s3ClientConfig({ endpoint: s3.IMAGELAKE_S3_ENDPOINT, region: 'us-east-1' } as never),
  );
  // Only the image areas: the lake's own check object (.health/check) stays, as it would in production.
  let left = 0;
  for (const area of IMAGE_AREAS)
    left +=
      LAKE === 's3'
        ? await s3Keys(client, bucket, `${prefix}/${area}/`)
        : await filesUnder(join(lakeRoot, area));

  // The baseline: as many objects of the same layout, deleted bare.
  const bare = { ...backlog, startMs: backlog.startMs };
  let bareSeconds: number;
  if (LAKE === 's3') {
    const barePrefix = `${prefix}-bare`;
    const { S3Lake } = await import('../src/lake/s3.ts');
    const bareLake = new S3Lake({ bucket, prefix: `${barePrefix}/`, client });
    await timed(`writing ${objects} objects for the baseline`, () => writeLakeObjects(bareLake, bare, all));
    bareSeconds = (
      await timed('bare DeleteObjects', () =>
        eachIndex(Math.ceil(IMAGES / 250), DELETE_CONCURRENCY, async (page) => {
          const keys: string[] = [];
          for (let i = page * 250; i < Math.min(IMAGES, (page + 1) * 250); i++)
            keys.push(...objectKeys(bare, i));
          await client.send(
            new DeleteObjectsCommand({
              Bucket: bucket,
              Delete: { Objects: keys.map((k) => ({ Key: `${barePrefix}/${k}` })), Quiet: true },
            }),
          );
        }),
      )
    ).seconds;
  } else {
    const bareRoot = join(dataDir, 'bare');
    await timed(`writing ${objects} files for the baseline`, () => writeFolderObjects(bareRoot, bare, all));
    bareSeconds = (
      await timed('bare unlink', () =>
        bareFolderDelete(bareRoot, bare, { ...all, concurrency: DELETE_CONCURRENCY }),
      )
    ).seconds;
  }
  await rm(dataDir, { recursive: true, force: true });
  // What the server's lake check wrote is all that stays under the run's S3 prefix.
  if (LAKE === 's3')
    await client.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: `${prefix}/.health/check` }] } }),
    );

  const expected = {
    catalog: IMAGES,
    raw: IMAGES,
    metadata: IMAGES,
    rendition: 2 * IMAGES,
    fact: IMAGES,
    hash: IMAGES,
  };
  const wrong = Object.entries(expected).filter(([k, n]) => result.deleted[k] !== n);
  const ok =
    result.imagesLeft === 0 &&
    left === 0 &&
    wrong.length === 0 &&
    result.subjects === IMAGES &&
    result.chainOk;
  console.log(
    `  bare: ${bareSeconds.toFixed(1)} s, ${(objects / bareSeconds).toFixed(0)} objects/s; ` +
      `purge/bare objects/s ratio ${(bareSeconds / result.seconds).toFixed(2)}`,
  );
  console.log(
    `  check: ${result.imagesLeft} images and ${left} objects left; ${result.receipts} receipts counting ` +
      `${JSON.stringify(result.deleted)}, ${result.subjects} subjects; chain ${result.chainOk ? 'verifies' : 'BROKEN'}` +
      (ok ? '' : `; WRONG: ${wrong.map(([k]) => k).join(', ')}`),
  );
  if (!ok) process.exitCode = 1;
  return { seconds: result.seconds, ratio: bareSeconds / result.seconds, rss: result.peakRssBytes };
}

if (values.child) {
  await child(JSON.parse(values.child) as Record<string, string>);
} else {
  const s3 = LAKE === 's3' ? s3Settings() : {};
  for (const [k, v] of Object.entries(s3)) if (k.startsWith('AWS_')) process.env[k] = v;
  const results = [];
  for (let run = 1; run <= RUNS; run++) results.push(await oneRun(run, s3));
  if (results.length > 1) {
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
    console.log(
      `${RUNS} runs: purge ${spread(results.map((r) => r.seconds))} s, ratio to bare ${spread(results.map((r) => r.ratio))}, ` +
        `peak RSS ${spread(results.map((r) => r.rss / 2 ** 20))} MB`,
    );
  }
}
