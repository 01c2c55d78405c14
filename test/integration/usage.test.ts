import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { jpeg, png } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  createCustomer,
  DAY,
  settled,
  startTestServer,
  TestClock,
  type TestServer,
  until,
  upload,
} from './harness.ts';

const meanColor = fileURLToPath(new URL('../fixtures/processors/mean-color.ts', import.meta.url));
const clock = new TestClock();
// Months turn in these tests: the file runs on the 10th of next month (same time of day), whatever
// today is, so that a day or a month on lands where the assertions expect.
{
  const now = new Date();
  clock.offsetMs =
    Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 10, now.getUTCHours(), now.getUTCMinutes()) -
    now.getTime();
}
let t: TestServer;
let a: { id: string; apiKey: string };
let b: { id: string; apiKey: string };
let analystKey: string;
const sent = { aBytes: 0, bBytes: 0 };
const today = () => clock.now().toISOString().slice(0, 10);
const corrupt = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(900, 3)]);

before(async () => {
  // No scheduler role: the end-of-day snapshot is taken when the test asks for a purge.
  t = await startTestServer(
    { IMAGELAKE_PROCESSORS: meanColor, IMAGELAKE_STATS_RETENTION: '30d' },
    ['api', 'worker'],
    clock,
  );
  a = await createCustomer(t.url, 'Usage A');
  b = await createCustomer(t.url, 'Usage B');
  analystKey = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'billing' })).body.apiKey;
  // A: three photos and one corrupt file; B: one photo.
  for (const bytes of [await jpeg({ seed: 1 }), await jpeg({ seed: 2 }), await png(), corrupt]) {
    const landed = await upload(t.url, a.apiKey, bytes);
    assert.equal(landed.status, 202);
    sent.aBytes += bytes.length;
    await settled(t.url, a.apiKey, landed.body.id);
  }
  const photo = await jpeg({ seed: 3 });
  sent.bBytes += photo.length;
  await settled(t.url, b.apiKey, (await upload(t.url, b.apiKey, photo)).body.id);
  // A duplicate (same idempotency key, same bytes) lands nothing and is not counted twice.
  const again = await jpeg({ seed: 4 });
  const first = await upload(t.url, b.apiKey, again, { 'idempotency-key': 'once' });
  await upload(t.url, b.apiKey, again, { 'idempotency-key': 'once' });
  sent.bBytes += again.length;
  await settled(t.url, b.apiKey, first.body.id);
});
after(async () => {
  await t?.stop();
});

describe('usage for billing', () => {
  it('counts what happened per customer per day: received, processed, failed, bytes, processing time', async () => {
    const { status, body } = await api(t.url, ADMIN, 'GET', `/v1/usage?from=${today()}&to=${today()}`);
    assert.equal(status, 200);
    const rowA = body.rows.find((r: any) => r.customerId === a.id);
    const rowB = body.rows.find((r: any) => r.customerId === b.id);
    assert.equal(body.rows.length, 2);
    assert.equal(rowA.day, today());
    assert.equal(rowA.imagesReceived, 4);
    assert.equal(rowA.bytesReceived, sent.aBytes);
    assert.equal(rowA.imagesProcessed, 3);
    assert.equal(rowA.imagesFailed, 1);
    assert.ok(rowA.processingMs > 0, 'wall time of processing is counted');
    assert.ok(rowA.cpuSeconds > 0, "the pipeline's CPU is counted");
    assert.ok(rowA.processorMs['mean-color'] > 0, 'time per company processor');
    assert.equal(rowA.bytesHeld, null, 'the day is not over: no snapshot yet');
    assert.equal(rowB.imagesReceived, 2);
    assert.equal(rowB.bytesReceived, sent.bBytes);
    assert.equal(rowB.imagesProcessed, 2);
    assert.equal(rowB.imagesFailed, 0);
  });

  it('a customer sees only its own usage, whatever it asks for; an analyst sees all', async () => {
    const own = await api(t.url, a.apiKey, 'GET', `/v1/usage?customerId=${b.id}`);
    assert.equal(own.status, 200);
    assert.deepEqual(
      own.body.rows.map((r: any) => r.customerId),
      [a.id],
    );
    const analyst = await api(t.url, analystKey, 'GET', `/v1/usage?customerId=${b.id}`);
    assert.equal(analyst.status, 200);
    assert.deepEqual(
      analyst.body.rows.map((r: any) => r.customerId),
      [b.id],
    );
    const anonymous = await fetch(`${t.url}/v1/usage`);
    assert.equal(anonymous.status, 401);
    const bad = await api(t.url, ADMIN, 'GET', '/v1/usage?from=yesterday');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'VALIDATION_FAILED');
  });

  it('answers CSV with format=csv or Accept: text/csv', async () => {
    const byQuery = await api(t.url, ADMIN, 'GET', `/v1/usage?format=csv&customerId=${a.id}`);
    assert.equal(byQuery.status, 200);
    assert.match(byQuery.headers.get('content-type') ?? '', /^text\/csv/);
    const [header, line, ...rest] = (byQuery.body as string).trim().split('\n');
    assert.equal(
      header,
      'day,customerId,imagesReceived,bytesReceived,imagesProcessed,imagesFailed,processingMs,cpuSeconds,bytesHeld,processorMs',
    );
    assert.equal(rest.length, 0);
    const cells = line!.split(',');
    assert.deepEqual(cells.slice(0, 6), [today(), a.id, '4', String(sent.aBytes), '3', '1']);
    assert.match(line!, /"\{""mean-color"":[0-9.]+\}"$/);
    const byAccept = await fetch(`${t.url}/v1/usage`, {
      headers: { authorization: `Bearer ${b.apiKey}`, accept: 'text/csv' },
    });
    assert.match(byAccept.headers.get('content-type') ?? '', /^text\/csv/);
    assert.equal((await byAccept.text()).trim().split('\n').length, 2);
  });

  it('takes the bytes held at the end of a day once it is over, once', async () => {
    const day = today();
    let usage = await api(t.url, ADMIN, 'GET', `/v1/usage?from=${day}&to=${day}&customerId=${a.id}`);
    assert.equal(usage.body.rows[0].bytesHeld, null);
    clock.advance(DAY);
    assert.equal((await api(t.url, ADMIN, 'POST', '/v1/purges')).status, 200);
    usage = await api(t.url, ADMIN, 'GET', `/v1/usage?from=${day}&to=${day}`);
    const held = Object.fromEntries(usage.body.rows.map((r: any) => [r.customerId, r.bytesHeld]));
    assert.equal(held[a.id], sent.aBytes, "every original of A's is still in the lake");
    assert.equal(held[b.id], sent.bBytes);
    // An image landed after the day ended is not held at its end; a second purge changes nothing.
    await settled(t.url, b.apiKey, (await upload(t.url, b.apiKey, await jpeg({ seed: 5 }))).body.id);
    assert.equal((await api(t.url, ADMIN, 'POST', '/v1/purges')).status, 200);
    usage = await api(t.url, ADMIN, 'GET', `/v1/usage?from=${day}&to=${day}&customerId=${b.id}`);
    assert.equal(usage.body.rows[0].bytesHeld, sent.bBytes);
    assert.equal(usage.body.rows[0].imagesReceived, 2, 'the new image counts on its own day');
  });

  it("counts a reprocess run's processor time on the day it ran, and no image again", async () => {
    const day = today();
    const before = (await api(t.url, ADMIN, 'GET', `/v1/usage?from=${day}&to=${day}&customerId=${a.id}`)).body
      .rows[0];
    const started = await api(t.url, ADMIN, 'POST', '/v1/reprocess', {
      processor: 'mean-color',
      customerId: a.id,
      force: true,
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    await until('the reprocess run to finish', async () => {
      const { body } = await api(t.url, ADMIN, 'GET', `/v1/reprocess/${started.body.id}`);
      return body.status === 'done' && body;
    });
    const usage = (await api(t.url, ADMIN, 'GET', `/v1/usage?from=${day}&to=${day}&customerId=${a.id}`)).body
      .rows[0];
    assert.ok(usage.processorMs['mean-color'] > (before?.processorMs['mean-color'] ?? 0));
    assert.equal(usage.imagesReceived, before?.imagesReceived ?? 0);
    assert.equal(usage.imagesProcessed, before?.imagesProcessed ?? 0);
  });

  it('exports usage to Parquet that DuckDB reads back', async () => {
    const result = await api(t.url, ADMIN, 'POST', '/v1/analytics/export');
    assert.equal(result.status, 200);
    const duck = await DuckDBInstance.create(':memory:');
    const db = await duck.connect();
    try {
      const rows = (
        await db.runAndReadAll(
          `select customer_id::varchar as customer, sum(images_received)::int as received, sum(images_failed)::int as failed,
             sum(bytes_received)::bigint::varchar as bytes, max(bytes_held)::bigint::varchar as held
           from read_parquet('${join(t.dataDir, 'lake')}/analytics/usage_daily/*/*.parquet', hive_partitioning = true)
           group by 1 order by 1`,
        )
      ).getRowObjects();
      const ofA = rows.find((r) => r.customer === a.id)!;
      assert.equal(ofA.received, 4);
      assert.equal(ofA.failed, 1);
      assert.equal(ofA.bytes, String(sent.aBytes));
      assert.equal(ofA.held, String(sent.aBytes));
    } finally {
      db.closeSync();
      duck.closeSync();
    }
  });

  it('is kept for the statistics window, then pruned with the rollups', async () => {
    const firstDay = (await api(t.url, ADMIN, 'GET', `/v1/usage?customerId=${a.id}`)).body.rows[0].day;
    clock.advance(31 * DAY);
    assert.equal((await api(t.url, ADMIN, 'POST', '/v1/purges')).status, 200);
    const { body } = await api(t.url, ADMIN, 'GET', `/v1/usage?from=${firstDay}&to=${firstDay}`);
    assert.deepEqual(body.rows, []);
    // The quota counts keep the current and the previous month only.
    const months = async () =>
      (
        await t.server.db
          .selectFrom('quota_usage')
          .select('month')
          .distinct()
          .where('customer_id', '=', a.id)
          .execute()
      ).length;
    assert.equal(await months(), 1, 'the landing month is the previous month now: kept');
    clock.advance(31 * DAY);
    assert.equal((await api(t.url, ADMIN, 'POST', '/v1/purges')).status, 200);
    assert.equal(await months(), 0, 'two months on, its count is gone');
  });
});

describe('the queue view', () => {
  let q: TestServer;
  before(async () => {
    // No worker: what lands waits.
    q = await startTestServer({}, ['api']);
  });
  after(async () => {
    await q?.stop();
  });

  it('GET /v1/queue shows waiting jobs by priority and the customers with the most waiting; /metrics by priority', async () => {
    const big = await createCustomer(q.url, 'Backfill');
    const small = await createCustomer(q.url, 'Small');
    for (let i = 0; i < 3; i++)
      assert.equal((await upload(q.url, big.apiKey, await jpeg({ seed: 10 + i }))).status, 202);
    assert.equal((await upload(q.url, small.apiKey, await jpeg({ seed: 20 }))).status, 202);
    const { status, body } = await api(q.url, ADMIN, 'GET', '/v1/queue');
    assert.equal(status, 200);
    const interactive = body.priorities.find((p: any) => p.priority === 'interactive');
    assert.equal(interactive.waiting, 4);
    assert.equal(interactive.inFlight, 0);
    assert.ok(interactive.oldestWaitSeconds >= 0);
    assert.deepEqual(
      body.priorities.find((p: any) => p.priority === 'bulk'),
      {
        priority: 'bulk',
        waiting: 0,
        inFlight: 0,
        oldestWaitSeconds: null,
      },
    );
    assert.deepEqual(
      body.customers.map((c: any) => [c.customerId, c.waiting]),
      [
        [big.id, 3],
        [small.id, 1],
      ],
    );
    assert.equal((await api(q.url, big.apiKey, 'GET', '/v1/queue')).status, 403);
    const metrics = await (await fetch(`${q.url}/metrics`)).text();
    assert.match(metrics, /imagelake_queue_depth\{state="queued",priority="interactive"\} 4/);
    assert.match(metrics, /imagelake_queue_oldest_wait_seconds\{priority="bulk"\} 0/);
    assert.match(metrics, /imagelake_queue_oldest_wait_seconds\{priority="interactive"\} [0-9.e-]+/);
    assert.doesNotMatch(metrics, new RegExp(big.id), 'no series per customer');
  });
});
