import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import pino from 'pino';
import type { Lake } from '../../src/lake/port.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { purgeExpired } from '../../src/retention/purge.ts';
import { verifyReceipts } from '../../src/retention/receipts.ts';
import { jpeg, png } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  auditOf,
  cli,
  createCustomer,
  DAY,
  startTestServer,
  TestClock,
  type TestServer,
  uploadProcessed,
} from './harness.ts';

const WINDOW = 7 * DAY;

function totals(receipts: any[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const r of receipts)
    for (const [kind, c] of Object.entries(r.deleted as Record<string, { count: number }>))
      sum[kind] = (sum[kind] ?? 0) + c.count;
  return sum;
}

/** What purgeExpired needs of a test server, to call it with a lake or limits of the test's own. */
function purgeDeps(t: TestServer, clock: TestClock) {
  return {
    db: t.server.db,
    clock,
    log: pino({ level: 'silent' }),
    metrics: createMetrics(),
    retentionMs: WINDOW,
    statsRetentionMs: 400 * DAY,
  };
}

describe('retention you can prove', () => {
  it('purges by age and per-customer window, audits clean, accounts for every copy, keeps aggregates', async () => {
    const clock = new TestClock();
    const t = await startTestServer({ IMAGELAKE_RETENTION: '7d' }, ['api', 'worker'], clock);
    try {
      const a = await createCustomer(t.url, 'Standard');
      const b = await createCustomer(t.url, 'Short window');
      const longer = await api(t.url, ADMIN, 'PATCH', `/v1/customers/${b.id}`, { retention: '30d' });
      assert.equal(longer.status, 400, 'a customer cannot be kept longer than the platform allows');
      const set = await api(t.url, ADMIN, 'PATCH', `/v1/customers/${b.id}`, { retention: '2d' });
      assert.deepEqual(set.body.retention, '2d');

      const a1 = await uploadProcessed(t, a.apiKey, await jpeg({ seed: 1 }));
      await uploadProcessed(t, a.apiKey, await png());
      const b1 = await uploadProcessed(t, b.apiKey, await jpeg({ seed: 2 }));
      assert.equal(
        Date.parse(b1.expiresAt) - Date.parse(b1.receivedAt),
        2 * DAY,
        "expiresAt follows the customer's window",
      );
      assert.equal(Date.parse(a1.expiresAt) - Date.parse(a1.receivedAt), 7 * DAY);

      clock.advance(3 * DAY);
      const a3 = await uploadProcessed(t, a.apiKey, await jpeg({ seed: 3 }));
      await uploadProcessed(t, b.apiKey, await jpeg({ seed: 4 }));

      const first = (await api(t.url, ADMIN, 'POST', '/v1/purges')).body;
      assert.equal(first.kind, 'retention');
      assert.equal(first.deleted.catalog.count, 1, 'only the short-window image has expired after 3 days');
      assert.equal((await api(t.url, b.apiKey, 'GET', `/v1/images/${b1.id}`)).status, 404);

      // A Kafka claim check whose message never came: image bytes too, under the same window.
      await t.server.lake.put('claims/never-consumed.jpg', await jpeg({ seed: 5 }));
      clock.advance(5 * DAY);
      const second = (await api(t.url, ADMIN, 'POST', '/v1/purges')).body;
      assert.equal(second.deleted.claim.count, 1);
      assert.equal(await t.server.lake.head('claims/never-consumed.jpg'), undefined);
      assert.equal(
        second.deleted.catalog.count,
        3,
        'two 8-day-old images and one 5-day-old short-window image',
      );
      assert.equal(
        (await api(t.url, a.apiKey, 'GET', `/v1/images/${a3.id}`)).status,
        200,
        'a 5-day-old image stays',
      );

      const report = await auditOf(t, clock, WINDOW);
      assert.deepEqual(report.findings, []);
      assert.equal(report.scanned.catalogRows, 1);
      assert.equal(report.scanned.lakeObjects, 4, 'the one image left: original, two renditions, sidecar');

      const { receipts } = (await api(t.url, ADMIN, 'GET', '/v1/purges')).body;
      const sum = totals(receipts);
      assert.deepEqual(
        [sum.raw, sum.rendition, sum.metadata, sum.catalog],
        [4, 8, 4, 4],
        'every copy of the 4 purged images, once',
      );
      assert.ok(receipts.every((r: any) => r.subjects.every((s: string) => /^[0-9a-f]{64}$/.test(s))));

      const stats = (await api(t.url, ADMIN, 'GET', '/v1/stats?groupBy=customer')).body.rows;
      assert.deepEqual(stats.map((r: any) => [r.customerName, r.images]).sort(), [
        ['Short window', 2],
        ['Standard', 3],
      ]);
      assert.equal((await verifyReceipts(t.server.db)).ok, true);
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      assert.match(metrics, /imagelake_purge_lag_seconds 0\n/);
    } finally {
      await t.stop();
    }
  });

  it('a purge killed mid-batch is finished by the next one: audit clean, nothing counted twice', async () => {
    const clock = new TestClock();
    const t = await startTestServer({ IMAGELAKE_RETENTION: '7d' }, ['api', 'worker'], clock);
    try {
      const c = await createCustomer(t.url, 'Crashing purge');
      for (let i = 0; i < 5; i++)
        await uploadProcessed(t, c.apiKey, await jpeg({ seed: 10 + i, width: 120, height: 90 }));
      clock.advance(8 * DAY);

      // The lake "dies" after six deletions, in the middle of the first batch's eight objects.
      let deletions = 0;
      const dying: Lake = Object.create(t.server.lake);
      dying.delete = async (key: string) => {
        if (++deletions > 6) throw new Error('killed');
        return t.server.lake.delete(key);
      };
      dying.deleteMany = async (keys: string[]) => {
        const room = Math.max(0, 6 - deletions);
        deletions += keys.length;
        await t.server.lake.deleteMany(keys.slice(0, room));
        if (deletions > 6) throw new Error('killed');
      };
      const deps = { ...purgeDeps(t, clock), batchSize: 2 };
      await assert.rejects(purgeExpired({ ...deps, lake: dying }), /killed/);
      const broken = await auditOf(t, clock, WINDOW);
      assert.ok(broken.findings.length > 0, 'the interrupted purge left copies behind');

      const receipt = await purgeExpired({ ...deps, lake: t.server.lake });
      assert.deepEqual((await auditOf(t, clock, WINDOW)).findings, []);
      const { receipts } = (await api(t.url, ADMIN, 'GET', '/v1/purges')).body;
      assert.equal(receipts.length, 2, 'the resumed run and the new one');
      assert.equal(
        receipt.body.deleted.catalog?.count,
        1,
        "the crash hit the first batch's objects while the second batch was planned: the resumed run finishes those 4, the new run takes the last",
      );
      const sum = totals(receipts);
      assert.deepEqual([sum.raw, sum.rendition, sum.metadata, sum.catalog], [5, 10, 5, 5]);
    } finally {
      await t.stop();
    }
  });

  it('purges a backlog over the run cap in several runs, each sealed with its receipt, every image counted once', async () => {
    const clock = new TestClock();
    const t = await startTestServer({ IMAGELAKE_RETENTION: '7d' }, ['api', 'worker'], clock);
    try {
      const c = await createCustomer(t.url, 'Large backlog');
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        ids.push(
          (await uploadProcessed(t, c.apiKey, await jpeg({ seed: 40 + i, width: 64, height: 48 }))).id,
        );
      clock.advance(8 * DAY);
      const last = await purgeExpired({
        ...purgeDeps(t, clock),
        lake: t.server.lake,
        batchSize: 2,
        maxImagesPerRun: 2,
      });
      const { receipts } = (await api(t.url, ADMIN, 'GET', '/v1/purges')).body;
      assert.deepEqual(
        receipts.map((r: any) => r.deleted.catalog?.count ?? 0),
        [1, 2, 2],
        'newest first: runs of 2, 2 and the last image',
      );
      assert.equal(receipts[0].runId, last.body.runId, 'the purge answers with its last run');
      const sum = totals(receipts);
      assert.deepEqual([sum.raw, sum.rendition, sum.metadata, sum.catalog, sum.fact], [5, 10, 5, 5, 5]);
      const subjects = receipts.flatMap((r: any) => r.subjects).sort();
      assert.deepEqual(
        subjects,
        ids.map((id) => createHash('sha256').update(id).digest('hex')).sort(),
        'each image in exactly one receipt',
      );
      assert.deepEqual((await auditOf(t, clock, WINDOW)).findings, []);
      assert.equal((await verifyReceipts(t.server.db)).ok, true);
    } finally {
      await t.stop();
    }
  });

  it('erases one customer on request, everywhere, and leaves the others intact', async () => {
    const clock = new TestClock();
    const t = await startTestServer({}, ['api', 'worker'], clock);
    try {
      const gone = await createCustomer(t.url, 'Leaving');
      const stays = await createCustomer(t.url, 'Staying');
      const goneImages = [
        await uploadProcessed(t, gone.apiKey, await jpeg({ seed: 20 })),
        await uploadProcessed(t, gone.apiKey, await png()),
      ];
      const kept = await uploadProcessed(t, stays.apiKey, await jpeg({ seed: 21 }));
      // An object of a landing that crashed before its row: erasure must find it in the lake.
      await t.server.lake.put(
        `raw/dt=2026-01-01/customer=${gone.id}/00000000-0000-4000-8000-00000000dead.jpg`,
        await jpeg(),
      );

      const erased = await api(t.url, ADMIN, 'DELETE', `/v1/customers/${gone.id}/images`);
      assert.equal(erased.status, 200);
      assert.equal(erased.body.kind, 'erasure');
      assert.equal(erased.body.scope.customerId, gone.id);
      assert.deepEqual(
        [erased.body.deleted.raw.count, erased.body.deleted.catalog.count, erased.body.deleted.orphan.count],
        [2, 2, 1],
      );
      for (const image of goneImages)
        assert.equal((await api(t.url, ADMIN, 'GET', `/v1/images/${image.id}`)).status, 404);
      const left: string[] = [];
      for (const area of ['raw/', 'renditions/', 'metadata/'])
        for await (const o of t.server.lake.list(area)) left.push(o.key);
      assert.ok(left.length === 4 && left.every((k) => k.includes(`customer=${stays.id}`)), left.join('\n'));
      assert.equal((await api(t.url, stays.apiKey, 'GET', `/v1/images/${kept.id}`)).body.status, 'processed');
      assert.deepEqual((await auditOf(t, clock, WINDOW)).findings, []);
    } finally {
      await t.stop();
    }
  });

  it('detects a tampered or removed receipt, and names it; the CLI says so too', async () => {
    const clock = new TestClock();
    const t = await startTestServer({}, ['api', 'worker'], clock);
    try {
      const c = await createCustomer(t.url, 'Tamper');
      for (let i = 0; i < 4; i++) {
        const image = await uploadProcessed(t, c.apiKey, await jpeg({ seed: 30 + i, width: 64, height: 64 }));
        await api(t.url, c.apiKey, 'DELETE', `/v1/images/${image.id}`);
      }
      // The server's own settings: its data dir and the lake folder in it, whatever the shell says.
      const env = { IMAGELAKE_DATA_DIR: t.dataDir, IMAGELAKE_LAKE_URL: '' };
      const clean = await cli(['retention', 'verify-receipts'], env);
      assert.equal(clean.code, 0, clean.out);
      assert.match(clean.out, /4 receipts, chain intact/);
      const audited = await cli(['retention', 'audit'], env);
      assert.equal(audited.code, 0, audited.out);
      assert.match(audited.out, /clean/);

      // The table refuses edits outright...
      await assert.rejects(
        sql`update purge_receipts set hash = 'x' where seq = 2`.execute(t.server.db),
        /append-only/,
      );
      // ...so tampering takes switching the guard off, which the chain still exposes.
      await sql`alter table purge_receipts disable trigger purge_receipts_append_only`.execute(t.server.db);
      await sql`update purge_receipts set body = jsonb_set(body, '{deleted,raw,count}', '0') where seq = 2`.execute(
        t.server.db,
      );
      await sql`delete from purge_receipts where seq = 3`.execute(t.server.db);
      await sql`alter table purge_receipts enable trigger purge_receipts_append_only`.execute(t.server.db);

      const result = await verifyReceipts(t.server.db);
      assert.equal(result.ok, false);
      assert.ok(result.problems.some((p) => p.seq === 2 && /edited/.test(p.problem)));
      assert.ok(result.problems.some((p) => p.seq === 4 && /removed or edited/.test(p.problem)));
      assert.ok(result.problems.some((p) => p.seq === null && /receipt is missing/.test(p.problem)));
      const broken = await cli(['retention', 'verify-receipts'], env);
      assert.equal(broken.code, 1);
      assert.match(broken.out, /receipt 2 .*edited/);
      assert.match(broken.out, /chain BROKEN/);
    } finally {
      await t.stop();
    }
  });

  it('prints the lifecycle backstops', async () => {
    const { code, out } = await cli(['retention', 'lifecycle'], { IMAGELAKE_RETENTION: '7d' });
    assert.equal(code, 0, out);
    assert.match(out, /"Days": 8/);
    assert.match(out, /"age": 8/);
    assert.match(out, /retention\.ms=604800000/);
  });
});
