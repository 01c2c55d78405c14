import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, cli, createCustomer, spawnServer, type TestServer, until, upload } from './harness.ts';
import { header, produce, readTopic } from './kafka-broker.ts';
import { topicServer } from './kafka-server.ts';

// Two api processes (no worker: uploads stay waiting) on one PostgreSQL and one lake folder.
let root: string;
let postgres: EmbeddedDatabase;
const children: ChildProcess[] = [];
let a: string;
let b: string;
let photos: Buffer[];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-limits-'));
  postgres = await startEmbeddedPostgres(join(root, 'pg'), pino({ level: 'silent' }));
  const env = {
    IMAGELAKE_DATABASE_URL: postgres.url,
    IMAGELAKE_LAKE_URL: `file://${join(root, 'lake')}`,
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_DATA_DIR: join(root, 'unused'),
    IMAGELAKE_MAX_QUEUE_DEPTH: '40',
    // A minute's burst: a bucket refills one upload in 20 s at 0.05 a second, far slower than the test.
    IMAGELAKE_RATE_BURST_SECONDS: '60',
  };
  const first = await spawnServer(env, ['api']);
  children.push(first.child);
  const second = await spawnServer(env, ['api']);
  children.push(second.child);
  a = first.url;
  b = second.url;
  photos = await Promise.all(
    Array.from({ length: 8 }, (_, i) => jpeg({ width: 64, height: 48, seed: 7000 + i })),
  );
});

after(async () => {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const child of running) child.kill('SIGTERM');
  await Promise.all(running.map((c) => new Promise((r) => c.once('exit', r))));
  await postgres?.stop();
  await rm(root, { recursive: true, force: true });
});

async function limits(id: string, set: Record<string, number | null>) {
  const res = await api(a, ADMIN, 'PATCH', `/v1/customers/${id}`, { limits: set });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

describe('per-customer limits across two api processes', () => {
  it('admin sets limits (null: the default) and reads them back with the limits in force', async () => {
    const c = await createCustomer(a, 'Limits shown');
    const fresh = await api(b, ADMIN, 'GET', `/v1/customers/${c.id}`);
    assert.equal(fresh.status, 200);
    assert.deepEqual(fresh.body.limits, {
      uploadsPerSecond: null,
      bytesPerSecond: null,
      monthlyImages: null,
      monthlyBytes: null,
      queueShare: null,
    });
    // The default share is a quarter of IMAGELAKE_MAX_QUEUE_DEPTH; rates and quotas are off by default.
    assert.deepEqual(fresh.body.effectiveLimits, {
      uploadsPerSecond: 0,
      bytesPerSecond: 0,
      monthlyImages: 0,
      monthlyBytes: 0,
      queueShare: 10,
    });
    const set = await limits(c.id, { uploadsPerSecond: 2.5, monthlyImages: 1000, queueShare: 7 });
    assert.equal(set.limits.uploadsPerSecond, 2.5);
    assert.equal(set.effectiveLimits.queueShare, 7);
    const reset = await limits(c.id, { queueShare: null });
    assert.equal(reset.limits.queueShare, null);
    assert.equal(reset.limits.monthlyImages, 1000, 'a key left out is unchanged');
    assert.equal(reset.effectiveLimits.queueShare, 10);
    const list = await api(b, ADMIN, 'GET', '/v1/customers');
    assert.equal(list.body.customers.find((x: { id: string }) => x.id === c.id).limits.uploadsPerSecond, 2.5);

    const bad = await api(a, ADMIN, 'PATCH', `/v1/customers/${c.id}`, { limits: { queueShare: 0 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'VALIDATION_FAILED');
    const unknown = await api(a, ADMIN, 'PATCH', `/v1/customers/${c.id}`, { limits: { perDay: 3 } });
    assert.equal(unknown.status, 400);
    const missing = await api(a, ADMIN, 'PATCH', `/v1/customers/${randomUUID()}`, {
      limits: { queueShare: 3 },
    });
    assert.equal(missing.status, 404);
    const asCustomer = await api(a, c.apiKey, 'PATCH', `/v1/customers/${c.id}`, {
      limits: { queueShare: 99 },
    });
    assert.equal(asCustomer.status, 403);
  });

  it('an uploads rate limit is one bucket for both processes: 429 RATE_LIMITED with Retry-After, headers on every answer', async () => {
    const c = await createCustomer(a, 'Rate limited');
    // 0.05 uploads a second with a 60 s burst: 3 at once, then one every 20 s.
    await limits(c.id, { uploadsPerSecond: 0.05 });
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await upload(i % 2 === 0 ? a : b, c.apiKey, photos[i]!));
    assert.deepEqual(
      answers.map((r) => r.status),
      [202, 202, 202, 429, 429, 429],
      'the two processes share one bucket (each alone would have let 3 through)',
    );
    for (const r of answers) assert.equal(r.headers.get('ratelimit-policy'), '"uploads";q=3;w=60');
    assert.deepEqual(
      answers.slice(0, 3).map((r) => /^"uploads";r=(\d+);t=\d+$/.exec(r.headers.get('ratelimit') ?? '')?.[1]),
      ['2', '1', '0'],
    );
    for (const r of answers.slice(3)) {
      assert.equal(r.body.error.code, 'RATE_LIMITED');
      assert.match(r.body.error.message, /0\.05 uploads a second/);
      const retryAfter = Number(r.headers.get('retry-after'));
      assert.ok(retryAfter >= 1 && retryAfter <= 20, `Retry-After ${retryAfter}`);
      assert.match(r.headers.get('ratelimit') ?? '', /^"uploads";r=0;t=\d+$/);
    }
    const metrics = await (await fetch(`${b}/metrics`)).text();
    assert.match(metrics, /imagelake_ingest_rejected_total\{source="http",code="RATE_LIMITED"\} [1-9]/);
    // Another customer is not limited, and carries no RateLimit fields (no limit is in force for it).
    const other = await createCustomer(a, 'Not rate limited');
    const free = await upload(b, other.apiKey, photos[0]!);
    assert.equal(free.status, 202);
    assert.equal(free.headers.get('ratelimit'), null);
  });

  it('a bytes rate limit charges the bytes once they are in: the next upload waits for the debt, on either process', async () => {
    const c = await createCustomer(a, 'Byte limited');
    const photo = photos[6]!;
    // A burst of a little less than the photo: the first lands, the bucket is in debt after it.
    const perSecond = Math.floor(photo.length / 90);
    await limits(c.id, { bytesPerSecond: perSecond });
    const first = await upload(a, c.apiKey, photo);
    assert.equal(first.status, 202);
    assert.equal(
      first.headers.get('ratelimit-policy'),
      `"bytes";q=${perSecond * 60};w=60;qu="content-bytes"`,
    );
    const second = await upload(b, c.apiKey, photos[7]!);
    assert.equal(second.status, 429);
    assert.equal(second.body.error.code, 'RATE_LIMITED');
    assert.match(second.body.error.message, /bytes a second/);
    assert.ok(Number(second.headers.get('retry-after')) >= 1);
    assert.match(second.headers.get('ratelimit') ?? '', /^"bytes";r=0;t=\d+$/);

    // With an uploads limit too: a refusal for bytes takes no upload token, and both buckets show.
    await limits(c.id, { uploadsPerSecond: 0.05 });
    const both = await upload(a, c.apiKey, photos[7]!);
    assert.equal(both.status, 429);
    assert.equal(
      both.headers.get('ratelimit-policy'),
      `"uploads";q=3;w=60, "bytes";q=${perSecond * 60};w=60;qu="content-bytes"`,
    );
    assert.match(both.headers.get('ratelimit') ?? '', /^"uploads";r=3;t=0, "bytes";r=0;t=\d+$/);
  });

  it('a monthly images quota: 403 QUOTA_EXCEEDED past it, counted once across both processes', async () => {
    const c = await createCustomer(a, 'Quota');
    await limits(c.id, { monthlyImages: 3 });
    const answers = await Promise.all(photos.slice(0, 6).map((p, i) => upload(i % 2 ? a : b, c.apiKey, p)));
    assert.equal(answers.filter((r) => r.status === 202).length, 3, 'exactly the quota lands, even at once');
    for (const r of answers.filter((x) => x.status !== 202)) {
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'QUOTA_EXCEEDED');
      assert.match(r.body.error.message, /monthly quota is 3 images/);
    }
    const shown = await api(b, ADMIN, 'GET', `/v1/customers/${c.id}`);
    assert.equal(shown.body.usage.images, 3);
    assert.equal(shown.body.usage.month, new Date().toISOString().slice(0, 7));
    // Raised by admin: the customer lands again.
    await limits(c.id, { monthlyImages: 4 });
    await until('the raised quota to hold on the other process', async () => {
      const r = await upload(b, c.apiKey, photos[7]!);
      return r.status === 202 || (r.body.error.code !== 'QUOTA_EXCEEDED' && r.status);
    });
  });

  it('a monthly bytes quota refuses the image that would go over it', async () => {
    const c = await createCustomer(a, 'Byte quota');
    await limits(c.id, { monthlyBytes: photos[0]!.length + 10 });
    assert.equal((await upload(a, c.apiKey, photos[0]!)).status, 202);
    const over = await upload(b, c.apiKey, photos[1]!);
    assert.equal(over.status, 403);
    assert.equal(over.body.error.code, 'QUOTA_EXCEEDED');
    assert.match(over.body.error.message, /bytes/);
  });

  it("the CLI sets and shows a customer's limits", async () => {
    const c = await createCustomer(a, 'Set from the CLI');
    const set = await cli([
      'customers',
      'limits',
      c.id,
      '--uploads-per-second',
      '5',
      '--monthly-bytes',
      '2GiB',
      '--queue-share',
      '12',
      '--url',
      b,
      '--token',
      ADMIN,
    ]);
    assert.equal(set.code, 0, set.out);
    assert.match(set.out, /uploadsPerSecond\s+5\s+\(own\)/);
    assert.match(set.out, /monthlyImages\s+no limit\s+\(default\)/);
    const shown = await api(a, ADMIN, 'GET', `/v1/customers/${c.id}`);
    assert.deepEqual(shown.body.limits, {
      uploadsPerSecond: 5,
      bytesPerSecond: null,
      monthlyImages: null,
      monthlyBytes: 2 * 1024 ** 3,
      queueShare: 12,
    });
    const reset = await cli([
      'customers',
      'limits',
      c.id,
      '--queue-share',
      'default',
      '--url',
      a,
      '--token',
      ADMIN,
    ]);
    assert.equal(reset.code, 0, reset.out);
    assert.match(reset.out, /queueShare\s+10\s+\(default\)/);
    const bad = await cli([
      'customers',
      'limits',
      c.id,
      '--queue-share',
      'lots',
      '--url',
      a,
      '--token',
      ADMIN,
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.out, /--queue-share "lots" is not a number/);
  });

  it('a customer over its queue share gets 429 QUEUE_FULL for itself only; another customer still lands', async () => {
    const backfill = await createCustomer(a, 'Backfill');
    const small = await createCustomer(a, 'Small');
    await limits(backfill.id, { queueShare: 3 });
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await upload(i % 2 ? a : b, backfill.apiKey, photos[i]!));
    assert.deepEqual(
      answers.slice(0, 3).map((r) => r.status),
      [202, 202, 202],
    );
    for (const r of answers.slice(3)) {
      assert.equal(r.status, 429);
      assert.equal(r.body.error.code, 'QUEUE_FULL');
      assert.match(
        r.body.error.message,
        /own share of the queue is full: at least 3 of its images are waiting/,
      );
    }
    for (const url of [a, b]) assert.equal((await upload(url, small.apiKey, photos[5]!)).status, 202);
  });
});

describe('Kafka messages over quota', () => {
  let t: TestServer;
  let bootstrap: string;
  let TOPIC: string;
  let stop: (() => Promise<void>) | undefined;

  before(async () => {
    ({ t, bootstrap, topic: TOPIC, stop } = await topicServer('quota'));
  });
  after(async () => {
    await stop?.();
  });

  it('go to the dead-letter topic with QUOTA_EXCEEDED; the quota lands exactly', async () => {
    const c = await createCustomer(t.url, 'Streaming with a quota');
    const res = await api(t.url, ADMIN, 'PATCH', `/v1/customers/${c.id}`, { limits: { monthlyImages: 2 } });
    assert.equal(res.status, 200);
    await produce(
      bootstrap,
      TOPIC,
      photos
        .slice(0, 5)
        .map((value, i) => ({ value, headers: { 'customer-id': c.id, 'message-id': `q-${i}` } })),
    );
    const dead = await readTopic(bootstrap, `${TOPIC}.dlq`, (seen) => seen.length >= 3);
    assert.equal(dead.length, 3);
    for (const m of dead) {
      assert.equal(header(m, 'error-code'), 'QUOTA_EXCEEDED');
      assert.match(header(m, 'error-message') ?? '', /monthly quota is 2 images/);
    }
    const shown = await api(t.url, ADMIN, 'GET', `/v1/customers/${c.id}`);
    assert.equal(shown.body.usage.images, 2);
  });
});
