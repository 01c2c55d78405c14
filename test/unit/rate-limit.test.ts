import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { effectiveLimits } from '../../src/ingest/customer-limits.ts';
import { policyItem, refill, secondsUntil, stateItem, takeTokens } from '../../src/ingest/rate-limit.ts';

describe('token buckets', () => {
  const bucket = { rate: 2, burst: 4 };

  it('start full, take one token an upload, and refuse (taking nothing) when empty', () => {
    let state: { tokens: number; at: number } | undefined;
    const granted: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      const taken = takeTokens(bucket, state, 1_000, 1, 1);
      granted.push(taken.granted);
      state = taken.state;
    }
    assert.deepEqual(granted, [true, true, true, true, false, false]);
    assert.equal(state!.tokens, 0);
  });

  it('refill at the rate, never past the burst, and never backwards in time', () => {
    const empty = { tokens: 0, at: 10_000 };
    assert.equal(refill(bucket, empty, 10_500), 1);
    assert.equal(refill(bucket, empty, 11_000), 2);
    assert.equal(refill(bucket, empty, 60_000), 4, 'capped at the burst');
    assert.equal(refill(bucket, empty, 9_000), 0, 'a clock behind the last update adds nothing');
    assert.equal(takeTokens(bucket, empty, 9_000, 1, 1).state.at, 10_000);
  });

  it('let a byte bucket go into debt once the bytes are in, and refuse until it is paid off', () => {
    const bytes = { rate: 1000, burst: 2000 };
    const charged = takeTokens(bytes, undefined, 0, 5000, -Number.MAX_VALUE);
    assert.equal(charged.granted, true);
    assert.equal(charged.state.tokens, -3000);
    assert.equal(takeTokens(bytes, charged.state, 1_000, 0, 0).granted, false, '2000 still owed');
    assert.equal(secondsUntil(bytes, -2000, 0), 2);
    assert.equal(takeTokens(bytes, charged.state, 3_000, 0, 0).granted, true, 'paid off after 3 s');
  });

  it('say when to retry: whole seconds, at least one', () => {
    assert.equal(secondsUntil(bucket, 0, 1), 1);
    assert.equal(secondsUntil({ rate: 0.05, burst: 3 }, 0, 1), 20);
    assert.equal(secondsUntil({ rate: 0.05, burst: 3 }, 0.5, 1), 10);
    assert.equal(secondsUntil(bucket, 3, 1), 0);
  });

  it('write the draft-ietf-httpapi-ratelimit-headers items', () => {
    assert.equal(policyItem('uploads', { rate: 10, burst: 20 }, 2, false), '"uploads";q=20;w=2');
    assert.equal(
      policyItem('bytes', { rate: 1024, burst: 2048 }, 2, true),
      '"bytes";q=2048;w=2;qu="content-bytes"',
    );
    assert.equal(stateItem('uploads', { rate: 10, burst: 20 }, 7.6), '"uploads";r=7;t=2');
    assert.equal(stateItem('uploads', { rate: 10, burst: 20 }, 20), '"uploads";r=20;t=0');
    assert.equal(stateItem('bytes', { rate: 100, burst: 200 }, -50), '"bytes";r=0;t=3');
  });
});

describe('limits in force', () => {
  it("default to the config (a quarter of the queue per customer; no rates, no quotas) and yield to the customer's own", () => {
    const config = loadConfig({});
    assert.equal(config.limits.maxQueueDepthPerCustomer, 2500);
    assert.equal(loadConfig({ IMAGELAKE_MAX_QUEUE_DEPTH: '10' }).limits.maxQueueDepthPerCustomer, 3);
    assert.deepEqual(effectiveLimits(undefined, config.limits), {
      uploadsPerSecond: 0,
      bytesPerSecond: 0,
      monthlyImages: 0,
      monthlyBytes: 0,
      queueShare: 2500,
    });
    const set = loadConfig({
      IMAGELAKE_RATE_UPLOADS: '2.5',
      IMAGELAKE_RATE_BYTES: '10MiB',
      IMAGELAKE_QUOTA_MONTHLY_IMAGES: '1000',
      IMAGELAKE_QUOTA_MONTHLY_BYTES: '1GiB',
      IMAGELAKE_MAX_QUEUE_DEPTH_PER_CUSTOMER: '50',
    });
    const row = {
      id: 'c',
      name: 'c',
      created_at: new Date(),
      retention_ms: null,
      uploads_per_second: null,
      bytes_per_second: '100',
      monthly_images: '0',
      monthly_bytes: null,
      queue_share: 7,
      weight: 1,
      duplicates: 'accept' as const,
    };
    assert.deepEqual(effectiveLimits(row, set.limits), {
      uploadsPerSecond: 2.5,
      bytesPerSecond: 100,
      monthlyImages: 0,
      monthlyBytes: 1024 ** 3,
      queueShare: 7,
    });
    assert.throws(() => loadConfig({ IMAGELAKE_RATE_UPLOADS: 'fast' }), /IMAGELAKE_RATE_UPLOADS/);
  });
});
