import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pino from 'pino';
import { usageBetween } from '../../src/analytics/usage.ts';
import { setDuplicatePolicy } from '../../src/catalog/customers.ts';
import type { ImageRow } from '../../src/catalog/schema.ts';
import { insertEndpoint } from '../../src/catalog/webhooks.ts';
import { systemClock, utcDay } from '../../src/clock.ts';
import { AppError } from '../../src/errors.ts';
import { Lander } from '../../src/ingest/land.ts';
import { LandingGroup, type Recording } from '../../src/ingest/land-group.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { jpeg } from '../fixtures/images.ts';
import { createCustomer, startTestServer, type TestServer } from './harness.ts';
import { recording } from './land-recording.ts';

const DAY = 86_400_000;
let t: TestServer;

// The api role only: its catalog and lake, and no worker to take the jobs the tests count.
before(async () => {
  t = await startTestServer({}, ['api']);
});
after(async () => {
  await t?.stop();
});

function group() {
  const metrics = createMetrics();
  const landings = new LandingGroup({ db: t.server.db, maxAttempts: 3, retentionMs: 7 * DAY, metrics });
  const alone: Recording[] = [];
  /** Records them as one caller would, all in this tick; a landing sent alone answers with a stub. */
  const record = (recordings: Recording[]) =>
    Promise.all(
      recordings.map((r) =>
        landings.record(r, async () => {
          alone.push(r);
          return { id: r.row.id } as ImageRow;
        }),
      ),
    );
  const observed = async (outcome: 'committed' | 'alone') => {
    const values = (await metrics.landingGroups.get()).values;
    const of = (name: string) =>
      values.find((v) => v.metricName === name && v.labels.outcome === outcome)?.value ?? 0;
    return {
      groups: of('imagelake_landing_group_images_count'),
      images: of('imagelake_landing_group_images_sum'),
    };
  };
  return { record, alone, observed };
}

const rowsOf = (ids: string[]) =>
  t.server.db
    .selectFrom('images')
    .select(['id', 'duplicate_flagged', sql<string>`xmin::text`.as('transaction')])
    .where('id', 'in', ids)
    .execute();

describe('group commit of landings', () => {
  it('records the landings that wait while a transaction runs together, in one transaction', async () => {
    const customer = await createCustomer(t.url, 'Grouped');
    const g = group();
    // The first starts a transaction at once; the five after it wait for it and go together.
    const recordings = ['a', 'b', 'c', 'd', 'e', 'f'].map((c) => recording(customer.id, c));
    const images = await g.record(recordings);
    assert.deepEqual(
      images.map((i) => i.id),
      recordings.map((r) => r.row.id),
    );
    assert.deepEqual(g.alone, []);
    assert.deepEqual(await g.observed('committed'), { groups: 2, images: 6 });

    const rows = await rowsOf(recordings.map((r) => r.row.id));
    const transactionOf = new Map(rows.map((r) => [r.id, r.transaction]));
    const [first, ...rest] = recordings.map((r) => transactionOf.get(r.row.id));
    assert.equal(new Set(rest).size, 1, 'the five that waited share a transaction');
    assert.notEqual(first, rest[0]);

    // Every image has its job, in the order the landings came, and is counted once.
    const jobs = await t.server.db
      .selectFrom('jobs')
      .select(['image_id', 'vt', 'state'])
      .where('customer_id', '=', customer.id)
      .orderBy('vt')
      .execute();
    assert.deepEqual(
      jobs.map((j) => j.image_id),
      recordings.map((r) => r.row.id),
    );
    assert.ok(jobs.every((j) => j.state === 'queued'));
    const quota = await t.server.db
      .selectFrom('quota_usage')
      .select((eb) => [eb.fn.sum<string>('images').as('images'), eb.fn.sum<string>('bytes').as('bytes')])
      .where('customer_id', '=', customer.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual([Number(quota.images), Number(quota.bytes)], [6, 6]);
    const today = utcDay(recordings[0]!.row.received_at);
    const [usage] = await usageBetween(t.server.db, { from: today, to: today, customerId: customer.id });
    assert.deepEqual([usage?.imagesReceived, usage?.bytesReceived], [6, 6]);
  });

  it("never puts two customers' landings in one transaction", async () => {
    const [one, other] = [await createCustomer(t.url, 'One'), await createCustomer(t.url, 'Other')];
    const g = group();
    // Each customer's first starts its own transaction at once; the rest wait for their customer's.
    const recordings = ['a', 'b', 'c', 'd', 'e', 'f'].map((c, i) => recording((i % 2 ? other : one).id, c));
    await g.record(recordings);
    assert.deepEqual(await g.observed('committed'), { groups: 4, images: 6 });
    const transactionOf = new Map(
      (await rowsOf(recordings.map((r) => r.row.id))).map((r) => [r.id, r.transaction]),
    );
    const [a, b, c, d, e, f] = recordings.map((r) => transactionOf.get(r.row.id));
    assert.equal(c, e, "one's landings that waited share a transaction");
    assert.equal(d, f, "other's too");
    assert.equal(new Set([a, b, c, d]).size, 4, 'and no transaction holds both customers');
  });

  it("announces each image of a group to its customer's endpoints subscribed to image.received, and only those", async () => {
    const [hooked, other] = [await createCustomer(t.url, 'Hooked'), await createCustomer(t.url, 'Unhooked')];
    const endpoint = (customerId: string, events: string[]) =>
      insertEndpoint(t.server.db, {
        id: randomUUID(),
        customerId,
        url: 'https://hooks.example/in',
        description: null,
        events,
        secret: 'whsec_test',
      });
    const [received, processed] = [
      await endpoint(hooked.id, ['image.received']),
      await endpoint(hooked.id, ['image.processed']),
    ];
    // The other customer's endpoint wants image.processed only: its images are announced to no one.
    await endpoint(other.id, ['image.processed']);
    const g = group();
    const recordings = ['a', 'b', 'c', 'd', 'e', 'f'].map((c, i) =>
      recording((i % 2 ? other : hooked).id, c),
    );
    await g.record(recordings);
    assert.deepEqual(await g.observed('committed'), { groups: 4, images: 6 });
    const deliveries = await t.server.db
      .selectFrom('webhook_deliveries')
      .select(['endpoint_id', 'image_id', 'event_type'])
      .where(
        'image_id',
        'in',
        recordings.map((r) => r.row.id),
      )
      .execute();
    assert.deepEqual(
      deliveries.map((d) => [d.endpoint_id, d.image_id, d.event_type]).sort(),
      recordings
        .filter((_, i) => i % 2 === 0)
        .map((r) => [received.id, r.row.id, 'image.received'])
        .sort(),
    );
    assert.ok(!deliveries.some((d) => d.endpoint_id === processed.id));
  });

  it('flags what matches an image landed before or one earlier in the group, for a customer that flags', async () => {
    const customer = await createCustomer(t.url, 'Flags');
    await setDuplicatePolicy(t.server.db, customer.id, 'flag');
    const g = group();
    await g.record([recording(customer.id, 'landed before')]);
    const starter = recording(customer.id, 'starts a transaction');
    const again = recording(customer.id, 'landed before');
    const fresh = recording(customer.id, 'new');
    const freshAgain = recording(customer.id, 'new');
    await g.record([starter, again, fresh, freshAgain]);
    assert.deepEqual(g.alone, []);
    const flagged = new Map(
      (await rowsOf([again, fresh, freshAgain].map((r) => r.row.id))).map((r) => [r.id, r]),
    );
    assert.equal(flagged.get(again.row.id)!.duplicate_flagged, true);
    assert.equal(flagged.get(fresh.row.id)!.duplicate_flagged, false);
    assert.equal(flagged.get(freshAgain.row.id)!.duplicate_flagged, true);
    assert.equal(new Set([...flagged.values()].map((r) => r.transaction)).size, 1);
  });

  it('records each landing of a group alone, and nothing of the group, when it cannot commit whole', async () => {
    const rejects = await createCustomer(t.url, 'Rejects');
    await setDuplicatePolicy(t.server.db, rejects.id, 'reject');
    const g = group();
    const landed = recording(rejects.id, 'landed before');
    await g.record([landed]);

    // A duplicate its customer refuses; a quota the group would go over; a key that landed before.
    const duplicate = [recording(rejects.id, 'fine'), recording(rejects.id, 'landed before')];
    const quotaCustomer = await createCustomer(t.url, 'Quota');
    const quota = { images: 2, bytes: Number.POSITIVE_INFINITY };
    const overQuota = ['1', '2', '3'].map((c) => recording(quotaCustomer.id, c, { quota }));
    const sameKey = recording(rejects.id, 'other bytes');
    sameKey.row.idempotency_key = landed.row.idempotency_key;
    const redelivered = [recording(rejects.id, 'fine too'), sameKey];

    for (const [i, refused] of [duplicate, overQuota, redelivered].entries()) {
      const before = g.alone.length;
      await g.record([recording(refused[0]!.row.customer_id, `starter ${i}`), ...refused]);
      assert.equal(g.alone.length - before, refused.length, 'every landing of the group, alone');
      // The starter went first, alone in its transaction; the rest of the group left no row.
      const left = await rowsOf(g.alone.slice(before).map((r) => r.row.id));
      assert.deepEqual(left, []);
    }
    assert.deepEqual(await g.observed('alone'), { groups: 3, images: 7 });
    const quotaUsed = await t.server.db
      .selectFrom('quota_usage')
      .select((eb) => eb.fn.sum<string>('images').as('images'))
      .where('customer_id', '=', quotaCustomer.id)
      .executeTakeFirst();
    assert.equal(Number(quotaUsed?.images ?? 0), 1, 'the starter only');
  });
});

describe('a group-committed landing (Kafka)', () => {
  function lander() {
    return new Lander({
      db: t.server.db,
      lake: t.server.lake,
      clock: systemClock,
      log: pino({ level: 'silent' }),
      metrics: createMetrics(),
      limits: { maxBytes: 10 * 1024 * 1024, maxQueueDepth: 1000 },
      maxAttempts: 3,
      retentionMs: 7 * DAY,
    });
  }
  const rawObjects = async (customerId: string) => {
    const keys: string[] = [];
    for await (const o of t.server.lake.list('raw/')) if (o.key.includes(customerId)) keys.push(o.key);
    return keys;
  };

  it('answers a redelivery with its first landing and leaves one object in the lake', async () => {
    const customer = await createCustomer(t.url, 'Redelivered');
    const l = lander();
    const body = await jpeg({ width: 64, height: 48, seed: 1 });
    const message = {
      customerId: customer.id,
      source: 'kafka' as const,
      idempotencyKey: 'kafka:m-1',
      keyCheckedAtInsert: true,
    };
    const first = await l.land({ ...message, body });
    assert.equal(first.duplicate, false);
    // At once, as after a crash between the landing and its offset's commit, and later again.
    const [a, b] = await Promise.all([l.land({ ...message, body }), l.land({ ...message, body })]);
    const later = await l.land({ ...message, body });
    for (const again of [a, b, later]) {
      assert.equal(again.duplicate, true);
      assert.equal(again.image.id, first.image.id);
    }
    assert.deepEqual(await rawObjects(customer.id), [first.image.raw_key]);
  });

  it('refuses an exact copy for a customer that rejects duplicates, but not the redelivery of the original', async () => {
    const customer = await createCustomer(t.url, 'Rejects copies');
    await setDuplicatePolicy(t.server.db, customer.id, 'reject');
    const l = lander();
    const body = await jpeg({ width: 64, height: 48, seed: 2 });
    const original = { customerId: customer.id, source: 'kafka' as const, body, keyCheckedAtInsert: true };
    const first = await l.land({ ...original, idempotencyKey: 'kafka:original' });
    const [redelivery, copy] = await Promise.allSettled([
      l.land({ ...original, idempotencyKey: 'kafka:original' }),
      l.land({ ...original, idempotencyKey: 'kafka:copy' }),
    ]);
    assert.equal(redelivery.status, 'fulfilled');
    assert.equal(redelivery.value.duplicate, true);
    assert.equal(redelivery.value.image.id, first.image.id);
    assert.equal(copy.status, 'rejected');
    assert.ok(copy.reason instanceof AppError);
    assert.equal(copy.reason.code, 'DUPLICATE_IMAGE');
    assert.deepEqual(await rawObjects(customer.id), [first.image.raw_key]);
  });
});
