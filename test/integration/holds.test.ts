import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectLegalHoldCommand,
  ListObjectVersionsCommand,
} from '@aws-sdk/client-s3';
import { S3Lake } from '../../src/lake/s3.ts';
import { verifyReceipts } from '../../src/retention/receipts.ts';
import { jpeg } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  auditOf,
  createCustomer,
  DAY,
  startTestServer,
  TestClock,
  type TestServer,
  uploadProcessed,
} from './harness.ts';
import { s3Service } from './s3-service.ts';

async function processed(t: TestServer, key: string, seed: number): Promise<any> {
  return uploadProcessed(t, key, await jpeg({ seed }));
}

describe('legal holds', () => {
  it("keep a held customer's images past the window while another's go, with receipts, audit and release", async () => {
    const clock = new TestClock();
    const t = await startTestServer({ IMAGELAKE_RETENTION: '7d' }, ['api', 'worker'], clock);
    try {
      const held = await createCustomer(t.url, 'In dispute');
      const free = await createCustomer(t.url, 'Ordinary');
      const h1 = await processed(t, held.apiKey, 1);
      const h2 = await processed(t, held.apiKey, 2);
      const f1 = await processed(t, free.apiKey, 3);
      const f2 = await processed(t, free.apiKey, 4);

      // Refusals, each with its code, and nothing placed.
      const bad = async (body: unknown, status: number, code: string, key = ADMIN) => {
        const r = await api(t.url, key, 'POST', '/v1/holds', body);
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.equal(r.body.error.code, code);
      };
      await bad({ reason: 'no scope' }, 400, 'VALIDATION_FAILED');
      await bad({ customerId: held.id, reason: '   ' }, 400, 'VALIDATION_FAILED');
      await bad({ customerId: randomUUID(), reason: 'x' }, 404, 'NOT_FOUND');
      await bad({ imageIds: [f1.id, randomUUID()], reason: 'x' }, 404, 'NOT_FOUND');
      await bad({ customerId: held.id, imageIds: [f1.id], reason: 'x' }, 404, 'NOT_FOUND');
      await bad(
        { customerId: held.id, reason: 'x', until: new Date(Date.now() - DAY).toISOString() },
        400,
        'VALIDATION_FAILED',
      );
      await bad({ customerId: held.id, reason: 'x' }, 403, 'FORBIDDEN', held.apiKey);
      assert.deepEqual((await api(t.url, ADMIN, 'GET', '/v1/holds')).body.holds, []);

      const until = new Date(clock.now().getTime() + 10 * DAY).toISOString();
      const placed = await api(t.url, ADMIN, 'POST', '/v1/holds', {
        customerId: held.id,
        reason: 'Court order 4711',
        until,
      });
      assert.equal(placed.status, 201, JSON.stringify(placed.body));
      const hold = placed.body;
      assert.equal(hold.active, true);
      assert.equal(hold.customerId, held.id);
      assert.equal(hold.imageIds, null);
      assert.equal(hold.until, until);
      assert.ok(Number.isInteger(hold.receiptSeq));
      assert.deepEqual(
        (await api(t.url, ADMIN, 'GET', `/v1/holds/${hold.id}`)).body.reason,
        'Court order 4711',
      );

      // An image landing after the hold is under it too.
      const h3 = await processed(t, held.apiKey, 5);

      clock.advance(8 * DAY);
      const purge = (await api(t.url, ADMIN, 'POST', '/v1/purges')).body;
      assert.equal(purge.deleted.catalog.count, 2, "the other customer's two images go");
      assert.equal(purge.holds.kept[hold.id].images, 3, 'the receipt counts what the hold kept');
      assert.ok(purge.holds.kept[hold.id].bytes > 0);
      assert.equal(purge.holds.released, undefined);
      for (const image of [h1, h2, h3])
        assert.equal((await api(t.url, held.apiKey, 'GET', `/v1/images/${image.id}`)).status, 200);
      for (const image of [f1, f2])
        assert.equal((await api(t.url, free.apiKey, 'GET', `/v1/images/${image.id}`)).status, 404);

      // Erasure refuses held images, says why, and erases nothing; a customer cannot force it.
      const one = await api(t.url, held.apiKey, 'DELETE', `/v1/images/${h1.id}`);
      assert.equal(one.status, 409);
      assert.equal(one.body.error.code, 'LEGAL_HOLD');
      assert.match(one.body.error.message, new RegExp(hold.id));
      const forcedByCustomer = await api(t.url, held.apiKey, 'DELETE', `/v1/images/${h1.id}?force=true`);
      assert.equal(forcedByCustomer.status, 403);
      const all = await api(t.url, ADMIN, 'DELETE', `/v1/customers/${held.id}/images`);
      assert.equal(all.status, 409);
      assert.equal(all.body.error.code, 'LEGAL_HOLD');
      assert.equal(
        (await api(t.url, held.apiKey, 'GET', '/v1/images')).body.images.length,
        3,
        'nothing lost',
      );

      // The audit reports held images apart, not as violations; then flags the hold past its until.
      const report = await auditOf(t, clock);
      assert.deepEqual(report.findings, []);
      assert.deepEqual(report.held, { [hold.id]: { images: 3, pastWindow: 3 } });
      clock.advance(3 * DAY);
      const late = await auditOf(t, clock);
      assert.deepEqual(
        late.findings.map((f) => [f.kind, f.subject]),
        [['hold-past-until', hold.id]],
      );

      // Release: with a reason, once.
      const noReason = await api(t.url, ADMIN, 'DELETE', `/v1/holds/${hold.id}`, {});
      assert.equal(noReason.status, 400);
      const released = await api(t.url, ADMIN, 'DELETE', `/v1/holds/${hold.id}`, { reason: 'Settled' });
      assert.equal(released.status, 200, JSON.stringify(released.body));
      assert.equal(released.body.active, false);
      assert.equal(released.body.releaseReason, 'Settled');
      assert.ok(released.body.receiptSeq > hold.receiptSeq);
      const again = await api(t.url, ADMIN, 'DELETE', `/v1/holds/${hold.id}`, { reason: 'Settled' });
      assert.equal(again.body.error.code, 'HOLD_RELEASED');
      assert.equal(
        (await api(t.url, ADMIN, 'DELETE', `/v1/holds/${randomUUID()}`, { reason: 'x' })).status,
        404,
      );
      assert.deepEqual((await api(t.url, ADMIN, 'GET', '/v1/holds')).body.holds, []);
      assert.equal((await api(t.url, ADMIN, 'GET', '/v1/holds?all=true')).body.holds.length, 1);

      // The next purge takes them, and says it was the release.
      const after = (await api(t.url, ADMIN, 'POST', '/v1/purges')).body;
      assert.equal(after.deleted.catalog.count, 3);
      assert.equal(after.holds.released[hold.id].images, 3);
      assert.equal(after.holds.kept, undefined);
      assert.deepEqual((await auditOf(t, clock)).findings, []);

      // Placing and releasing are in the chain, which verifies.
      const { receipts } = (await api(t.url, ADMIN, 'GET', '/v1/purges')).body;
      const kinds = receipts.map((r: any) => r.kind).reverse();
      assert.deepEqual(kinds, ['hold', 'retention', 'release', 'retention']);
      const holdReceipt = receipts.find((r: any) => r.kind === 'hold');
      assert.deepEqual(
        [holdReceipt.scope.holdId, holdReceipt.scope.reason, holdReceipt.scope.customerId],
        [hold.id, 'Court order 4711', held.id],
      );
      assert.equal(receipts.find((r: any) => r.kind === 'release').scope.reason, 'Settled');
      assert.equal((await verifyReceipts(t.server.db)).ok, true);
    } finally {
      await t.stop();
    }
  });

  it('hold named images only; an admin can force their erasure and the receipt says so', async () => {
    const t = await startTestServer({}, ['api', 'worker']);
    try {
      const c = await createCustomer(t.url, 'Some images held');
      const kept = await processed(t, c.apiKey, 6);
      const other = await processed(t, c.apiKey, 7);
      const placed = await api(t.url, ADMIN, 'POST', '/v1/holds', { imageIds: [kept.id], reason: 'Dispute' });
      assert.equal(placed.status, 201, JSON.stringify(placed.body));
      assert.equal(placed.body.customerId, c.id, "images of one customer: the hold is that customer's");
      assert.equal((await api(t.url, c.apiKey, 'DELETE', `/v1/images/${other.id}`)).status, 200);
      assert.equal(
        (await api(t.url, c.apiKey, 'DELETE', `/v1/images/${kept.id}`)).body.error.code,
        'LEGAL_HOLD',
      );
      const forced = await api(t.url, ADMIN, 'DELETE', `/v1/images/${kept.id}?force=true`);
      assert.equal(forced.status, 200, JSON.stringify(forced.body));
      assert.equal(forced.body.deleted.catalog.count, 1);
      assert.equal(forced.body.holds.overridden[placed.body.id].images, 1);
      assert.equal((await api(t.url, c.apiKey, 'GET', `/v1/images/${kept.id}`)).status, 404);
    } finally {
      await t.stop();
    }
  });
});

describe('legal holds on an S3 lake with Object Lock', () => {
  const service = s3Service();
  after(() => service.stop());
  const bucket = `imagelake-locked-${randomUUID().slice(0, 8)}`;

  it('hold objects with S3 legal holds until release, then the purge removes every version', async () => {
    const lake = S3Lake.fromUrl(`s3://${bucket}/lake`, { ...process.env, ...service.env });
    const creds = { ...process.env, ...service.env };
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) process.env[k] = creds[k];
    await lake.client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
    const clock = new TestClock();
    const t = await startTestServer(
      { ...service.env, IMAGELAKE_LAKE_URL: `s3://${bucket}/lake`, IMAGELAKE_RETENTION: '7d' },
      ['api', 'worker'],
      clock,
    );
    const legalHold = async (key: string) =>
      (await lake.client.send(new GetObjectLegalHoldCommand({ Bucket: bucket, Key: `lake/${key}` })))
        .LegalHold?.Status;
    try {
      const held = await createCustomer(t.url, 'Held on S3');
      const free = await createCustomer(t.url, 'Free on S3');
      const h1 = await processed(t, held.apiKey, 8);
      const f1 = await processed(t, free.apiKey, 9);
      const hold = (
        await api(t.url, ADMIN, 'POST', '/v1/holds', { customerId: held.id, reason: 'Regulator request' })
      ).body;
      const heldKeys: string[] = [];
      for (const area of ['raw/', 'renditions/', 'metadata/'])
        for await (const o of t.server.lake.list(area)) if (o.key.includes(h1.id)) heldKeys.push(o.key);
      assert.equal(heldKeys.length, 4, 'original, two renditions, sidecar');
      for (const key of heldKeys) assert.equal(await legalHold(key), 'ON', key);

      // No other client (a lifecycle rule, a person with the keys) can delete a held version.
      const versions = await lake.client.send(
        new ListObjectVersionsCommand({ Bucket: bucket, Prefix: `lake/${heldKeys[0]}` }),
      );
      await assert.rejects(
        lake.client.send(
          new DeleteObjectCommand({
            Bucket: bucket,
            Key: `lake/${heldKeys[0]}`,
            VersionId: versions.Versions![0]!.VersionId,
          }),
        ),
      );

      clock.advance(8 * DAY);
      const purge = (await api(t.url, ADMIN, 'POST', '/v1/purges')).body;
      assert.equal(purge.deleted.catalog.count, 1);
      assert.equal(purge.holds.kept[hold.id].images, 1);
      assert.equal((await api(t.url, free.apiKey, 'GET', `/v1/images/${f1.id}`)).status, 404);
      const freeLeft = await lake.client.send(
        new ListObjectVersionsCommand({ Bucket: bucket, Prefix: 'lake/raw/' }),
      );
      assert.ok(
        [...(freeLeft.Versions ?? []), ...(freeLeft.DeleteMarkers ?? [])].every(
          (v) => !v.Key!.includes(f1.id),
        ),
        'every version of the purged image is gone, not hidden behind a delete marker',
      );

      await api(t.url, ADMIN, 'DELETE', `/v1/holds/${hold.id}`, { reason: 'Closed' });
      for (const key of heldKeys) assert.equal(await legalHold(key), 'OFF', key);
      const after = (await api(t.url, ADMIN, 'POST', '/v1/purges')).body;
      assert.equal(after.deleted.catalog.count, 1);
      assert.equal(after.holds.released[hold.id].images, 1);
      const left = await lake.client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: 'lake/' }));
      const imageVersions = [...(left.Versions ?? []), ...(left.DeleteMarkers ?? [])].filter((v) =>
        /^lake\/(raw|renditions|metadata)\//.test(v.Key!),
      );
      assert.deepEqual(imageVersions, []);
    } finally {
      await t.stop();
      // Whatever is left (the health check object, Parquet) goes with the bucket.
      const rest = await lake.client.send(new ListObjectVersionsCommand({ Bucket: bucket }));
      for (const v of [...(rest.Versions ?? []), ...(rest.DeleteMarkers ?? [])])
        await lake.client.send(
          new DeleteObjectCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId }),
        );
      await lake.client.send(new DeleteBucketCommand({ Bucket: bucket }));
    }
  });
});
