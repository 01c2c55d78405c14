import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pino from 'pino';
import { connect, type Db } from '../../src/catalog/database.ts';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, spawnServer, until } from './harness.ts';
import { s3Service } from './s3-service.ts';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const slow = fileURLToPath(new URL('../fixtures/processors/slow.ts', import.meta.url));

let root: string;
let postgres: EmbeddedDatabase;
let db: Db;
let destroy: () => Promise<void>;
const s3 = s3Service();
const children: ChildProcess[] = [];
let env: Record<string, string>;

/** A process with roles and no API, started like an operator would: `imagelake serve --roles ...`. */
function spawnRoles(roles: string, extra: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [MAIN, 'serve', '--roles', roles], {
    env: { ...process.env, ...env, IMAGELAKE_PORT: '0', IMAGELAKE_LOG_LEVEL: 'warn', ...extra },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-scale-'));
  // A PostgreSQL of its own, which the platform reaches only through its URL, as it would a managed one.
  postgres = await startEmbeddedPostgres(join(root, 'external'), pino({ level: 'silent' }));
  ({ db } = connect(postgres.url));
  destroy = () => db.destroy();
  env = {
    ...s3.env,
    IMAGELAKE_DATABASE_URL: postgres.url,
    IMAGELAKE_LAKE_URL: `s3://imagelake/scale-${randomUUID()}`,
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_DATA_DIR: join(root, 'unused'),
    IMAGELAKE_JOB_LEASE: '3s',
    IMAGELAKE_POLL_INTERVAL: '200ms',
    IMAGELAKE_PROCESSORS: slow,
    SLOW_PROCESSOR_MS: '60',
    IMAGELAKE_WORKER_THREADS: '1',
    IMAGELAKE_WORKER_CONCURRENCY: '3',
  };
});

after(async () => {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const child of running) child.kill('SIGTERM');
  await Promise.all(running.map((c) => new Promise((r) => c.once('exit', r))));
  await destroy?.();
  await postgres?.stop();
  s3.stop();
  await rm(root, { recursive: true, force: true });
});

describe('roles on many processes, one PostgreSQL, one S3', () => {
  it('two api and three worker processes: 500 uploads, one worker killed mid-run, each image processed exactly once', async () => {
    const apis = [await spawnServer(env, ['api']), await spawnServer(env, ['api'])];
    children.push(...apis.map((a) => a.child));
    const watched = await spawnServer(env, ['worker']);
    children.push(watched.child);
    const workers = [spawnRoles('worker'), spawnRoles('worker'), watched.child];
    const customer = await createCustomer(apis[0]!.url, 'Scale');
    const images = await Promise.all(
      Array.from({ length: 20 }, (_, i) => jpeg({ width: 48, height: 36, seed: 5000 + i })),
    );

    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, lane) => {
        while (next < 500) {
          const i = next++;
          const base = apis[lane % 2]!.url;
          const response = await fetch(`${base}/v1/images`, {
            method: 'POST',
            headers: { authorization: `Bearer ${customer.apiKey}`, 'idempotency-key': `scale-${i}` },
            body: new Uint8Array(images[i % images.length]!),
          });
          assert.equal(response.status, 202);
        }
      }),
    );
    const processed = async () =>
      Number(
        (await sql<{ n: string }>`select count(*) as n from images where status = 'processed'`.execute(db))
          .rows[0]!.n,
      );
    await until('a first share processed', async () => (await processed()) >= 100, 60_000);
    workers[0]!.kill('SIGKILL');
    await until('all 500 processed', async () => (await processed()) === 500, 120_000);

    const counts = (
      await sql<{ images: string; facts: string; rollup: string; failed: string; jobs: string }>`
        select (select count(*) from images) as images, (select count(*) from analytics.facts) as facts,
               (select sum(images) from analytics.rollup_daily) as rollup,
               (select count(*) from images where status = 'failed') as failed, (select count(*) from jobs) as jobs`.execute(
        db,
      )
    ).rows[0]!;
    assert.deepEqual(
      {
        images: Number(counts.images),
        facts: Number(counts.facts),
        rollup: Number(counts.rollup),
        failed: Number(counts.failed),
        jobs: Number(counts.jobs),
      },
      { images: 500, facts: 500, rollup: 500, failed: 0, jobs: 0 },
      'every image landed once, was processed once and counted once, and no job is left',
    );
    // A worker has no API, yet it is probed and scraped like any process: its own counters are there.
    assert.equal((await fetch(`${watched.url}/readyz`)).status, 200);
    const scraped = await (await fetch(`${watched.url}/metrics`)).text();
    const ran = Number(
      /imagelake_processor_runs_total\{processor="slow",outcome="ok"\} (\d+)/.exec(scraped)?.[1],
    );
    const done = Number(
      /imagelake_processed_total\{outcome="processed",format="jpeg"\} (\d+)/.exec(scraped)?.[1],
    );
    // A run whose lease was lost is counted by the processor but not as an image outcome.
    assert.ok(
      done > 0 && ran >= done,
      `the worker counted its own work (${ran} processor runs, ${done} images)`,
    );
    const elsewhere = await fetch(`${watched.url}/v1/images`);
    assert.equal(elsewhere.status, 404);
    assert.equal((await elsewhere.json()).error.code, 'NOT_FOUND');
    const stats = (await api(apis[1]!.url, ADMIN, 'GET', '/v1/stats?groupBy=status')).body.rows;
    assert.deepEqual(
      stats.map((r: { status: string; images: number }) => [r.status, r.images]),
      [['processed', 500]],
    );
  });

  it('keeps one scheduler at a time, and another takes over when it dies', async () => {
    const first = spawnRoles('scheduler', { IMAGELAKE_PURGE_INTERVAL: '1s' });
    const second = spawnRoles('scheduler', { IMAGELAKE_PURGE_INTERVAL: '1s' });
    const receipts = async () =>
      Number((await sql<{ n: string }>`select count(*) as n from purge_receipts`.execute(db)).rows[0]!.n);
    await until('purges by one of them', async () => (await receipts()) >= 3, 30_000);
    // Receipts chain one after another: two schedulers purging at once would have failed to append.
    first.kill('SIGKILL');
    const before = await receipts();
    await until('the other goes on purging', async () => (await receipts()) >= before + 3, 30_000);
    second.kill('SIGTERM');
  });
});
