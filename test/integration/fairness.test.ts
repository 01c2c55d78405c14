import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pino from 'pino';
import { connect, type Db } from '../../src/catalog/database.ts';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, cli, createCustomer, spawnServer, until, upload } from './harness.ts';

/**
 * Fair processing across customers, checked on the order in which images were processed (never on
 * time): one api process lands a backlog while no worker runs, then worker processes drain it.
 */
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const slow = fileURLToPath(new URL('../fixtures/processors/slow.ts', import.meta.url));

let root: string;
let postgres: EmbeddedDatabase;
let db: Db;
let apiUrl: string;
const children: ChildProcess[] = [];
let env: Record<string, string>;
let images: Buffer[];

function spawnWorker(extra: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [MAIN, 'serve', '--roles', 'worker'], {
    env: { ...process.env, ...env, ...extra, IMAGELAKE_PORT: '0', IMAGELAKE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

async function stopWorkers(workers: ChildProcess[]): Promise<void> {
  for (const child of workers) child.kill('SIGTERM');
  await Promise.all(
    workers.map((c) =>
      c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined,
    ),
  );
}

/** Lands `count` images for a customer, one after another, as a client's backfill would. */
async function landMany(key: string, count: number, headers: Record<string, string> = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const { status, body } = await upload(apiUrl, key, images[i % images.length]!, headers);
    assert.equal(status, 202, JSON.stringify(body));
    ids.push(body.id);
  }
  return ids;
}

/** The customers' images in the order they were processed. */
async function processingOrder(customerIds: string[]): Promise<string[]> {
  const rows = await sql<{ customer_id: string }>`
    select customer_id from images where customer_id in (${sql.join(customerIds)}) and status = 'processed'
    order by processed_at, id`.execute(db);
  return rows.rows.map((r) => r.customer_id);
}

async function drained(customerIds: string[], total: number): Promise<void> {
  await until(
    `all ${total} images processed`,
    async () => (await processingOrder(customerIds)).length === total,
    180_000,
  );
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-fair-'));
  postgres = await startEmbeddedPostgres(join(root, 'external'), pino({ level: 'silent' }));
  ({ db } = connect(postgres.url));
  env = {
    IMAGELAKE_DATABASE_URL: postgres.url,
    IMAGELAKE_LAKE_URL: `file://${join(root, 'lake')}`,
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_DATA_DIR: join(root, 'unused'),
    IMAGELAKE_POLL_INTERVAL: '200ms',
    IMAGELAKE_PROCESSORS: slow,
    SLOW_PROCESSOR_MS: '20',
    IMAGELAKE_WORKER_THREADS: '1',
    // One image at a time per worker: the order processed is the order claimed. No express lane,
    // which would run a second image beside it (its own test below turns it on).
    IMAGELAKE_WORKER_CONCURRENCY: '1',
    IMAGELAKE_WORKER_EXPRESS: '0',
  };
  const apiProcess = await spawnServer(env, ['api']);
  children.push(apiProcess.child);
  apiUrl = apiProcess.url;
  images = await Promise.all(
    Array.from({ length: 8 }, (_, i) => jpeg({ width: 32, height: 24, seed: 700 + i })),
  );
});

after(async () => {
  await stopWorkers(children.filter((c) => c.exitCode === null && c.signalCode === null));
  await db?.destroy();
  await postgres?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('fair processing across customers', () => {
  for (const workerCount of [1, 2]) {
    it(`a small customer's images are processed before a big backfill drains (${workerCount} worker process${workerCount > 1 ? 'es' : ''})`, async () => {
      const big = await createCustomer(apiUrl, `Backfill ${workerCount}`);
      const small = await createCustomer(apiUrl, `Small ${workerCount}`);
      await landMany(big.apiKey, 300);
      const workers = Array.from({ length: workerCount }, spawnWorker);
      // The small customer arrives while the backfill is being processed; none of its uploads is refused.
      await until('the backfill started', async () => (await processingOrder([big.id])).length > 0);
      await landMany(small.apiKey, 5);
      await drained([big.id, small.id], 305);
      await stopWorkers(workers);

      const order = await processingOrder([big.id, small.id]);
      const lastSmall = order.lastIndexOf(small.id);
      const bigBefore = order.slice(0, lastSmall).filter((c) => c === big.id).length;
      assert.ok(
        bigBefore < 150,
        `the small customer's 5 images were done after ${bigBefore} of the backfill's 300 (round robin: a handful, not the whole backlog)`,
      );
      const jobs = await sql<{ n: string }>`select count(*) as n from jobs`.execute(db);
      assert.equal(Number(jobs.rows[0]!.n), 0, 'no job is left');
    });
  }

  it('interactive jobs are claimed before waiting bulk jobs', async () => {
    const bulk = await createCustomer(apiUrl, 'Bulk');
    const interactive = await createCustomer(apiUrl, 'Interactive');
    // The backfill is sent as a user would: `imagelake upload --bulk` on a folder.
    const folder = join(root, 'backfill');
    await mkdir(folder);
    for (let i = 0; i < 60; i++)
      await writeFile(join(folder, `${i}.jpg`), await jpeg({ width: 32, height: 24, seed: 900 + i }));
    const sent = await cli([
      'upload',
      '--bulk',
      '--quiet',
      '--customer',
      bulk.apiKey,
      '--url',
      apiUrl,
      folder,
    ]);
    assert.equal(sent.code, 0, sent.out);
    await landMany(interactive.apiKey, 5);
    const priorities = await sql<{ priority: string; customer_id: string; n: string }>`
      select priority, customer_id, count(*) as n from jobs group by priority, customer_id order by priority`.execute(
      db,
    );
    assert.deepEqual(
      priorities.rows.map((r) => [r.priority, r.customer_id, Number(r.n)]),
      [
        ['bulk', bulk.id, 60],
        ['interactive', interactive.id, 5],
      ],
    );
    const worker = spawnWorker();
    await drained([bulk.id, interactive.id], 65);
    await stopWorkers([worker]);
    const order = await processingOrder([bulk.id, interactive.id]);
    assert.deepEqual(
      order.slice(0, 5),
      Array(5).fill(interactive.id),
      'the interactive images went first, although the bulk ones were queued before them',
    );
  });

  it("a customer with nothing running starts at once through the express lane, beside a backlog's image", async () => {
    const big = await createCustomer(apiUrl, 'Express backlog');
    const small = await createCustomer(apiUrl, 'Express newcomer');
    await landMany(big.apiKey, 3);
    // One regular slot, held by each of the backlog's images for 1.5 s; one express lane.
    const worker = spawnWorker({ SLOW_PROCESSOR_MS: '1500', IMAGELAKE_WORKER_EXPRESS: '1' });
    const running = async () =>
      (
        await sql<{ customer_id: string }>`
          select customer_id from jobs where state = 'running' and customer_id in (${big.id}, ${small.id})`.execute(
          db,
        )
      ).rows.map((r) => r.customer_id);
    await until('the backlog holds the slot', async () => (await running()).includes(big.id));
    await landMany(small.apiKey, 1);
    await until('the newcomer runs', async () => (await running()).includes(small.id), 10_000);
    const both = await running();
    assert.deepEqual(
      both.sort(),
      [big.id, small.id].sort(),
      "the newcomer's image runs beside the backlog's, which keeps a single job running: it has work running, so it never takes the express lane",
    );
    await drained([big.id, small.id], 4);
    await stopWorkers([worker]);
    const order = await processingOrder([big.id, small.id]);
    assert.ok(
      order.indexOf(small.id) <= 1,
      `the newcomer finished at position ${order.indexOf(small.id)} of 4`,
    );
  });

  it('a bad priority is refused with VALIDATION_FAILED', async () => {
    const customer = await createCustomer(apiUrl, 'Bad priority');
    const { status, body } = await upload(apiUrl, customer.apiKey, images[0]!, {
      'imagelake-priority': 'urgent',
    });
    assert.equal(status, 400);
    assert.equal(body.error.code, 'VALIDATION_FAILED');
  });

  it('a customer of weight 3 gets about three times the claims of a customer of weight 1', async () => {
    const heavy = await createCustomer(apiUrl, 'Heavy');
    const light = await createCustomer(apiUrl, 'Light');
    const set = await cli(['customers', 'weight', heavy.id, '3', '--url', apiUrl, '--token', ADMIN]);
    assert.equal(set.code, 0, set.out);
    assert.match(set.out, /weight 3/);
    const patched = await api(apiUrl, ADMIN, 'PATCH', `/v1/customers/${light.id}`, { weight: 1 });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.equal(patched.body.weight, 1);
    const listed = await api(apiUrl, ADMIN, 'GET', '/v1/customers');
    assert.equal(listed.body.customers.find((c: { id: string }) => c.id === heavy.id).weight, 3);
    assert.equal(listed.body.customers.find((c: { id: string }) => c.id === light.id).weight, 1);
    const refused = await api(apiUrl, ADMIN, 'PATCH', `/v1/customers/${heavy.id}`, { weight: 0 });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.code, 'VALIDATION_FAILED');

    await landMany(heavy.apiKey, 90);
    await landMany(light.apiKey, 90);
    const worker = spawnWorker();
    await drained([heavy.id, light.id], 180);
    await stopWorkers([worker]);
    // While both are backlogged (the first 80 claims: the heavy one runs out after 90), about 3:1.
    const first = (await processingOrder([heavy.id, light.id])).slice(0, 80);
    const heavyShare = first.filter((c) => c === heavy.id).length;
    assert.ok(
      heavyShare >= 54 && heavyShare <= 66,
      `heavy had ${heavyShare} of the first 80 claims, light ${80 - heavyShare} (expected about 60:20)`,
    );
  });

  // Last: no worker runs after it, so its job stays queued to be looked at.
  it('a direct upload completed with Imagelake-Priority: bulk is queued as bulk', async () => {
    const customer = await createCustomer(apiUrl, 'Direct');
    const session = (await api(apiUrl, customer.apiKey, 'POST', '/v1/uploads', { filename: 'd.jpg' })).body;
    const put = await fetch(session.uploadUrl, {
      method: 'PUT',
      headers: { authorization: `Bearer ${customer.apiKey}`, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(images[0]!),
    });
    assert.equal(put.status, 200);
    const done = await fetch(`${apiUrl}/v1/uploads/${session.id}/complete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${customer.apiKey}`, 'imagelake-priority': 'bulk' },
    });
    assert.equal(done.status, 202);
    const image = (await done.json()) as { id: string };
    const job = await sql<{ priority: string; customer_id: string }>`
      select priority, customer_id from jobs where image_id = ${image.id}`.execute(db);
    assert.deepEqual(job.rows, [{ priority: 'bulk', customer_id: customer.id }]);
  });
});
