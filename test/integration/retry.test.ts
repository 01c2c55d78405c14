import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { jpeg } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  cli,
  createCustomer,
  settled,
  startTestServer,
  type TestServer,
  until,
  upload,
} from './harness.ts';

const fixture = fileURLToPath(new URL('../fixtures/processors/until-fixed.ts', import.meta.url));

describe('retrying failed images once their processor is fixed', () => {
  let t: TestServer;
  let dir: string;
  let marker: string;
  let a: { id: string; apiKey: string };
  let b: { id: string; apiKey: string };
  const failedOf: Record<string, string[]> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagelake-retry-'));
    marker = join(dir, 'fixed');
    process.env.UNTIL_FIXED_MARKER = marker;
    await writeFile(
      join(dir, 'processors.json'),
      JSON.stringify({ processors: [{ name: 'until-fixed', module: fixture, timeout: '10s' }] }),
    );
    t = await startTestServer({ IMAGELAKE_PROCESSORS_FILE: join(dir, 'processors.json') });
    a = await createCustomer(t.url, 'Retries');
    b = await createCustomer(t.url, 'Other');
    for (const [c, n] of [
      [a, 4],
      [b, 1],
    ] as const) {
      failedOf[c.id] = [];
      for (let i = 0; i < n; i++) {
        const id = (await upload(t.url, c.apiKey, await jpeg({ seed: 100 + i, width: 50 + i }))).body.id;
        const image = await settled(t.url, c.apiKey, id);
        assert.equal(image.status, 'failed');
        assert.equal(image.error.code, 'PROCESSOR_FAILED');
        failedOf[c.id]!.push(id);
      }
    }
  });
  after(async () => {
    await t?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const statusCounts = async (customerId: string) =>
    Object.fromEntries(
      (await api(t.url, ADMIN, 'GET', `/v1/stats?groupBy=status&customerId=${customerId}`)).body.rows.map(
        (r: any) => [r.status, r.images],
      ),
    );
  const facts = async (customerId: string) =>
    (
      await api(t.url, ADMIN, 'POST', '/v1/sql', {
        query: `select outcome, count(*)::int as n from analytics.facts where customer_id = '${customerId}' group by 1 order by 1`,
      })
    ).body.rows;

  it('GET /v1/failures groups failed images by code, with examples; a customer sees its own', async () => {
    const all = await api(t.url, ADMIN, 'GET', '/v1/failures');
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.deepEqual(all.body.totals, { images: 5, deadLetters: 0 });
    const [group] = all.body.codes;
    assert.equal(group.code, 'PROCESSOR_FAILED');
    assert.equal(group.images, 5);
    assert.equal(group.examples.length, 5);
    assert.match(group.examples[0].message, /until-fixed@1\.0\.0: MODEL_MISSING/);

    const own = await api(t.url, a.apiKey, 'GET', `/v1/failures?customerId=${b.id}&examples=1`);
    assert.equal(own.body.totals.images, 4, "a customer's key sees its own, whatever it asks for");
    assert.equal(own.body.codes[0].examples.length, 1);
    assert.ok(own.body.codes[0].examples.every((e: any) => e.customerId === a.id));
    const none = await api(t.url, ADMIN, 'GET', '/v1/failures?code=CORRUPT_IMAGE');
    assert.deepEqual(none.body.codes, []);
    const bad = await api(t.url, ADMIN, 'GET', '/v1/failures?code=no%20such%20code');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'VALIDATION_FAILED');
    assert.equal((await api(t.url, ADMIN, 'GET', '/v1/failures?examples=51')).status, 400);
  });

  it('refuses what cannot be retried, with a code, and changes nothing', async () => {
    const other = await api(t.url, a.apiKey, 'POST', `/v1/images/${failedOf[b.id]![0]}/retry`);
    assert.equal(other.status, 404, "another customer's image is not found");
    assert.equal((await api(t.url, a.apiKey, 'POST', `/v1/images/${randomUUID()}/retry`)).status, 404);
    const badCursor = await api(t.url, ADMIN, 'POST', '/v1/retries', { cursor: 'nonsense' });
    assert.equal(badCursor.status, 400);
    assert.equal((await api(t.url, ADMIN, 'POST', '/v1/retries', { limit: 0 })).status, 400);
    // Still failing: a retry before the fix fails again, and is still counted once.
    const early = await api(t.url, a.apiKey, 'POST', `/v1/images/${failedOf[a.id]![0]}/retry`);
    assert.equal(early.status, 202);
    assert.equal(early.body.status, 'received');
    assert.equal((await settled(t.url, a.apiKey, early.body.id)).status, 'failed');
    assert.deepEqual(await facts(a.id), [{ outcome: 'failed', n: 4 }]);
    assert.deepEqual(await statusCounts(a.id), { failed: 4 });
  });

  it('once fixed, a retried image ends processed and is counted once', async () => {
    await writeFile(marker, '');
    const id = failedOf[a.id]![0]!;
    const retried = await api(t.url, a.apiKey, 'POST', `/v1/images/${id}/retry`);
    assert.equal(retried.status, 202, JSON.stringify(retried.body));
    const image = await settled(t.url, a.apiKey, id);
    assert.equal(image.status, 'processed');
    assert.equal(image.error, undefined);
    assert.ok(image.renditions.length >= 2, 'processed from the stored original: renditions too');
    assert.equal(image.width, 50);
    const again = await api(t.url, a.apiKey, 'POST', `/v1/images/${id}/retry`);
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'NOT_FAILED');
    assert.deepEqual(await facts(a.id), [
      { outcome: 'failed', n: 3 },
      { outcome: 'processed', n: 1 },
    ]);
    assert.deepEqual(await statusCounts(a.id), { failed: 3, processed: 1 });
  });

  it('imagelake retry queues the rest as bulk work, resumes from its cursor, and counts each once', async () => {
    const cursorFile = join(dir, 'retry.cursor');
    // A cursor left by an interrupted run after the second image: the run goes on after it.
    const step = await api(t.url, ADMIN, 'POST', '/v1/retries', {
      customerId: a.id,
      code: 'NO_SUCH_CODE',
    });
    assert.deepEqual([step.body.retried, step.body.remaining], [0, 0]);
    const rows = (
      await api(t.url, ADMIN, 'POST', '/v1/sql', {
        query: `select image_id, received_at from analytics.facts where customer_id = '${a.id}' and outcome = 'failed' order by received_at, image_id`,
      })
    ).body.rows;
    assert.equal(rows.length, 3);
    await writeFile(cursorFile, `${Date.parse(rows[0].received_at)}_${rows[0].image_id}\n`);

    const env = { IMAGELAKE_URL: t.url, IMAGELAKE_ADMIN_TOKEN: ADMIN };
    const run = await cli(
      [
        'retry',
        '--status',
        'failed',
        '--customer',
        a.id,
        '--code',
        'PROCESSOR_FAILED',
        '--cursor-file',
        cursorFile,
      ],
      env,
    );
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /Resuming after the cursor/);
    assert.match(run.out, /2 failed images queued again as bulk work/);
    await assert.rejects(readFile(cursorFile), 'the cursor goes once everything is queued');
    await until('both processed', async () => (await statusCounts(a.id)).processed === 3);
    assert.equal(
      (await api(t.url, a.apiKey, 'GET', `/v1/images/${rows[0].image_id}`)).body.status,
      'failed',
      'the image before the cursor was not retried',
    );

    // Without a cursor: the one left, and nothing of the other customer.
    const rest = await cli(['retry', '--status', 'failed', '--customer', a.id], env);
    assert.equal(rest.code, 0, rest.out);
    assert.match(rest.out, /1 failed images queued again/);
    await until('all processed', async () => (await statusCounts(a.id)).processed === 4);
    assert.deepEqual(await statusCounts(a.id), { processed: 4 });
    assert.deepEqual(await facts(a.id), [{ outcome: 'processed', n: 4 }]);
    assert.deepEqual(await statusCounts(b.id), { failed: 1 });
    const wrong = await cli(['retry', '--status', 'processed'], env);
    assert.equal(wrong.code, 2);
  });
});
