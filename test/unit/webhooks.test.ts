import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { ClaimedDelivery } from '../../src/catalog/webhook-deliveries.ts';
import { loadConfig } from '../../src/config/config.ts';
import { refusedAddress } from '../../src/webhooks/address-guard.ts';
import { AttemptRecorder } from '../../src/webhooks/attempt-recorder.ts';
import { nextStep } from '../../src/webhooks/dispatcher.ts';
import { HeldDeliveries } from '../../src/webhooks/held-deliveries.ts';
import { parseRetryAfter, RETRY_SCHEDULE_MS, retryDelay } from '../../src/webhooks/schedule.ts';
import { newSecret, secretsInForce, signedHeaders } from '../../src/webhooks/signing.ts';

describe('webhook retry schedule', () => {
  it('is the Standard Webhooks schedule, then gives up', () => {
    const s = 1000;
    const m = 60 * s;
    const h = 60 * m;
    assert.deepEqual(RETRY_SCHEDULE_MS, [
      0,
      5 * s,
      5 * m,
      30 * m,
      2 * h,
      5 * h,
      10 * h,
      14 * h,
      20 * h,
      24 * h,
    ]);
    assert.equal(retryDelay(1), 5 * s, 'after the first attempt fails');
    assert.equal(retryDelay(9), 24 * h);
    assert.equal(retryDelay(10), undefined, 'ten attempts in all');
  });

  it("takes a receiver's Retry-After in place of the step, up to a day", () => {
    assert.equal(retryDelay(1, 1000), 1000);
    assert.equal(retryDelay(3, 0), 0);
    assert.equal(retryDelay(1, 2 * 86_400_000), 5000, 'past a day the schedule applies');
    assert.equal(retryDelay(10, 1000), undefined, 'it does not extend the schedule');
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = new Date('2026-11-29T10:00:00Z');
    assert.equal(parseRetryAfter('7', now), 7000);
    assert.equal(parseRetryAfter('Sun, 29 Nov 2026 10:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Sun, 29 Nov 2026 09:00:00 GMT', now), 0, 'a date past is now');
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
  });

  it('delivered, retried, failed or gone: what follows an attempt', () => {
    const ended = new Date('2026-11-29T10:00:00Z');
    const attempt = (verdict: 'delivered' | 'retry' | 'gone' | 'final', retryAfterMs?: number) => ({
      verdict,
      statusCode: null,
      error: null,
      latencyMs: 1,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
    assert.deepEqual(nextStep({ roundAttempts: 0 }, attempt('delivered'), ended), {
      status: 'delivered',
      nextAttemptAt: null,
    });
    assert.deepEqual(nextStep({ roundAttempts: 0 }, attempt('retry'), ended), {
      status: 'pending',
      nextAttemptAt: new Date(ended.getTime() + 5000),
    });
    assert.deepEqual(
      nextStep({ roundAttempts: 0 }, attempt('retry', 2000), ended).nextAttemptAt,
      new Date(ended.getTime() + 2000),
    );
    assert.equal(nextStep({ roundAttempts: 9 }, attempt('retry'), ended).status, 'failed');
    assert.equal(nextStep({ roundAttempts: 0 }, attempt('final'), ended).status, 'failed');
    assert.equal(nextStep({ roundAttempts: 0 }, attempt('gone'), ended).status, 'failed');
  });
});

describe('webhook address guard', () => {
  it('refuses loopback, private, link-local, metadata and reserved addresses', () => {
    for (const address of [
      '127.0.0.1',
      '127.8.9.10',
      '10.0.0.1',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.100.100.200',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      'fe80::1',
      'fd00:ec2::254',
      'fc00::1',
      '::ffff:127.0.0.1',
      '::ffff:169.254.169.254',
      '64:ff9b::a00:1',
    ])
      assert.ok(refusedAddress(address), address);
  });

  it('lets public addresses through', () => {
    for (const address of [
      '93.184.216.34',
      '8.8.8.8',
      '172.32.0.1',
      '2606:4700:4700::1111',
      '::ffff:8.8.8.8',
    ])
      assert.equal(refusedAddress(address), undefined, address);
  });
});

describe('webhook signing', () => {
  it('makes whsec_ secrets that the standardwebhooks package verifies with', () => {
    const secret = newSecret();
    assert.match(secret, /^whsec_[A-Za-z0-9+/]{32}$/);
    const body = JSON.stringify({ type: 'webhook.test', timestamp: new Date().toISOString(), data: {} });
    const headers = signedHeaders([secret], 'msg-1', new Date(), body);
    assert.deepEqual(new Webhook(secret).verify(body, headers), JSON.parse(body));
    assert.throws(() => new Webhook(newSecret()).verify(body, headers), /No matching signature/);
  });

  it('signs as the standardwebhooks package does, byte for byte, with every secret in force', () => {
    const at = new Date('2026-11-29T10:00:00.750Z');
    const body = JSON.stringify({ type: 'image.processed', data: { filename: 'été 🌅.jpg' } });
    const [current, previous] = [newSecret(), newSecret()];
    const headers = signedHeaders([current, previous], 'msg-2', at, body);
    assert.equal(headers['webhook-timestamp'], '1795946400');
    assert.equal(
      headers['webhook-signature'],
      `${new Webhook(current).sign('msg-2', at, body)} ${new Webhook(previous).sign('msg-2', at, body)}`,
    );
    // A receiver that knows only the previous secret (mid-rotation) still verifies.
    const fresh = signedHeaders([current, previous], 'msg-3', new Date(), body);
    assert.deepEqual(new Webhook(previous).verify(body, fresh), JSON.parse(body));
  });

  it('signs with the previous secret too until the rotation overlap ends', () => {
    const now = new Date('2026-11-29T10:00:00Z');
    const endpoint = {
      secret: 'whsec_bmV3',
      previousSecret: 'whsec_b2xk',
      previousSecretUntil: new Date(now.getTime() + 1),
    };
    assert.deepEqual(secretsInForce(endpoint, now), ['whsec_bmV3', 'whsec_b2xk']);
    assert.deepEqual(secretsInForce(endpoint, new Date(now.getTime() + 1)), ['whsec_bmV3']);
    assert.deepEqual(secretsInForce({ ...endpoint, previousSecret: null }, now), ['whsec_bmV3']);
  });
});

describe('webhook settings', () => {
  it('default to https, public addresses, 15 s, five days', () => {
    const { webhooks } = loadConfig({});
    assert.equal(webhooks.allowHttp, false);
    assert.equal(webhooks.allowPrivate, false);
    assert.equal(webhooks.timeoutMs, 15_000);
    assert.equal(webhooks.disableAfterMs, 5 * 86_400_000);
  });

  it('are read and checked with the others', () => {
    const { webhooks } = loadConfig({
      IMAGELAKE_WEBHOOK_ALLOW_HTTP: 'true',
      IMAGELAKE_WEBHOOK_ALLOW_PRIVATE: 'true',
      IMAGELAKE_WEBHOOK_TIMEOUT: '2s',
      IMAGELAKE_WEBHOOK_CONCURRENCY: '8',
    });
    assert.equal(webhooks.allowHttp && webhooks.allowPrivate, true);
    assert.equal(webhooks.timeoutMs, 2000);
    assert.equal(webhooks.concurrency, 8);
    assert.throws(
      () => loadConfig({ IMAGELAKE_WEBHOOK_ALLOW_PRIVATE: 'maybe', IMAGELAKE_WEBHOOK_TIMEOUT: 'soon' }),
      (error: Error) =>
        /IMAGELAKE_WEBHOOK_ALLOW_PRIVATE="maybe" is not true or false/.test(error.message) &&
        /IMAGELAKE_WEBHOOK_TIMEOUT="soon"/.test(error.message),
    );
  });
});

describe('webhook attempt records', () => {
  const attempt = { at: '2026-01-01T00:00:00.000Z', statusCode: 204, error: null, latencyMs: 1 };
  const record = (id: string) => ({
    id,
    endpointId: 'e',
    attempt,
    next: { status: 'delivered' as const, nextAttemptAt: null },
  });

  it('writes the attempts that end together in one batch, and says which were recorded', async () => {
    const batches: string[][] = [];
    const recorder = new AttemptRecorder(async (records) => {
      batches.push(records.map((r) => r.id));
      // The catalog refuses one: its endpoint went to another dispatcher.
      return new Set(records.map((r) => r.id).filter((id) => id !== 'b'));
    });
    const results = await Promise.all(['a', 'b', 'c'].map((id) => recorder.record(record(id))));
    assert.deepEqual(batches, [['a', 'b', 'c']]);
    assert.deepEqual(results, [true, false, true]);
  });

  it('writes one batch at a time: what ends meanwhile goes in the next one', async () => {
    const batches: string[][] = [];
    let release: () => void = () => {};
    const recorder = new AttemptRecorder(async (records) => {
      batches.push(records.map((r) => r.id));
      if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return new Set(records.map((r) => r.id));
    });
    const first = recorder.record(record('a'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(batches, [['a']], 'the first batch is being written');
    const later = [recorder.record(record('b')), recorder.record(record('c'))];
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(batches.length, 1, 'nothing else is written while it is');
    release();
    assert.deepEqual(await Promise.all([first, ...later]), [true, true, true]);
    assert.deepEqual(batches, [['a'], ['b', 'c']]);
  });

  it('fails the attempts of a batch whose write failed, and goes on with the next', async () => {
    let calls = 0;
    const recorder = new AttemptRecorder(async (records) => {
      calls++;
      if (calls === 1) throw new Error('the catalog is down');
      return new Set(records.map((r) => r.id));
    });
    await assert.rejects(recorder.record(record('a')), /the catalog is down/);
    assert.equal(await recorder.record(record('b')), true);
  });
});

describe('what a webhook dispatcher holds', () => {
  const delivery = (id: string, endpointId: string) => ({ id, endpointId }) as ClaimedDelivery;

  it('sends endpoints in turn, at most the limit in flight to each, and lets go of what its lease cannot cover', () => {
    const held = new HeldDeliveries();
    held.add([delivery('a1', 'a'), delivery('a2', 'a'), delivery('a3', 'a'), delivery('b1', 'b')], 1000);
    held.add([delivery('c1', 'c')], 10);
    const { send, expired } = held.take(10, 2, 500);
    assert.deepEqual(
      send.map((d) => d.id),
      ['a1', 'b1', 'a2'],
      'in turn; a third of a waits for a slot',
    );
    assert.deepEqual(
      expired.map((d) => d.id),
      ['c1'],
      "c's lease ends before an attempt could",
    );
    assert.equal(held.inFlight, 3);
  });

  it('counts a delivery for the next claim until it is answered, and skips it until it is recorded', () => {
    const held = new HeldDeliveries();
    const [a1, a2] = [delivery('a1', 'a'), delivery('a2', 'a')];
    held.add([a1!, a2!], 1000);
    held.take(1, 1, 0);
    assert.equal(held.pendingFor('a'), 2);
    held.answered(a1!);
    assert.equal(held.pendingFor('a'), 1, 'answered: the endpoint may be topped up');
    assert.deepEqual(
      [...held.snapshot().ids.get('a')!].sort(),
      ['a1', 'a2'],
      'not yet recorded: the claim still skips it',
    );
    held.ended(a1!);
    assert.deepEqual(held.snapshot().ids, new Map([['a', ['a2']]]));
    assert.deepEqual(
      held.drain().map((d) => d.id),
      ['a2'],
    );
    assert.equal(held.pending, 0);
    assert.deepEqual(held.snapshot().ids, new Map());
  });
});
