import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import { Webhook } from 'standardwebhooks';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { claimDue, recordAttempts } from '../../src/catalog/webhook-deliveries.ts';
import { releaseEndpoints } from '../../src/catalog/webhooks.ts';
import { audit } from '../../src/retention/audit.ts';
import { Sender } from '../../src/webhooks/send.ts';
import { jpeg } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  createCustomer,
  DAY,
  freePort,
  settled,
  spawnServer,
  startTestServer,
  TestClock,
  type TestServer,
  until,
  upload,
} from './harness.ts';
import { type Received, Receiver } from './webhook-receiver.ts';

// One catalog for three processes: the platform in this process (api, worker, scheduler; its clock
// can jump to the purge), a dispatcher (`serve --roles webhooks`) in a child that the tests kill,
// and an API on the default webhook settings (https only, public addresses only) for the refusals.
const EXAMPLE_RECEIVER = fileURLToPath(new URL('../../examples/webhooks/receiver.ts', import.meta.url));
let root: string;
let postgres: EmbeddedDatabase;
let platform: TestServer;
let strict: TestServer;
let dispatcher: ChildProcess | undefined;
let dispatcherUrl = '';
let env: Record<string, string>;
const clock = new TestClock();
const receivers: Receiver[] = [];

async function startDispatcher(): Promise<void> {
  const spawned = await spawnServer(env, ['webhooks']);
  dispatcher = spawned.child;
  dispatcherUrl = spawned.url;
}

async function receiver(): Promise<Receiver> {
  const r = await new Receiver().start();
  receivers.push(r);
  return r;
}

function verify(secret: string, message: Received): any {
  return new Webhook(secret).verify(message.body, message.headers as Record<string, string>);
}

async function register(key: string, url: string, events: string[]) {
  const { status, body } = await api(platform.url, key, 'POST', '/v1/webhooks', { url, events });
  assert.equal(status, 201, JSON.stringify(body));
  return body as { id: string; secret: string };
}

async function deliveries(key: string, webhookId: string, query = ''): Promise<any[]> {
  const { status, body } = await api(
    platform.url,
    key,
    'GET',
    `/v1/webhooks/${webhookId}/deliveries${query}`,
  );
  assert.equal(status, 200, JSON.stringify(body));
  return body.deliveries;
}

async function delivery(key: string, webhookId: string, id: string): Promise<any> {
  return (await deliveries(key, webhookId, '?limit=200')).find((d) => d.id === id);
}

async function sendTest(key: string, webhookId: string): Promise<string> {
  const { status, body } = await api(platform.url, key, 'POST', `/v1/webhooks/${webhookId}/test`);
  assert.equal(status, 202, JSON.stringify(body));
  return body.deliveryId;
}

/**
 * The operators' panel (GET /v1/analytics/webhooks, read from counts: migration 0036) against the
 * deliveries themselves, counted per customer by status: what differs, if anything.
 */
async function panelMismatches(): Promise<{ customers: number; mismatches: unknown[] }> {
  // Wide enough for every delivery: the purge's test writes its image.expired events at a clock
  // moved days ahead.
  const day = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
  const { status, body } = await api(
    platform.url,
    ADMIN,
    'GET',
    `/v1/analytics/webhooks?from=${day(-60)}&to=${day(60)}`,
  );
  assert.equal(status, 200, JSON.stringify(body));
  const catalog = new pg.Client({ connectionString: postgres.url });
  await catalog.connect();
  const { rows } = await catalog
    .query(
      `select customer_id, count(*) filter (where status = 'delivered')::int as delivered,
              count(*) filter (where status = 'failed')::int as failed,
              count(*) filter (where status = 'pending')::int as pending
         from webhook_deliveries group by customer_id`,
    )
    .finally(() => catalog.end());
  const counted = new Map(
    rows.map((r) => [r.customer_id, { delivered: r.delivered, failed: r.failed, pending: r.pending }]),
  );
  const shown = new Map(
    body.customers.map((c: { customerId: string; delivered: number; failed: number; pending: number }) => [
      c.customerId,
      { delivered: c.delivered, failed: c.failed, pending: c.pending },
    ]),
  );
  const mismatches = [...new Set([...counted.keys(), ...shown.keys()])]
    .filter((id) => JSON.stringify(counted.get(id)) !== JSON.stringify(shown.get(id)))
    .map((id) => ({ id, counted: counted.get(id), shown: shown.get(id) }));
  return { customers: counted.size, mismatches };
}

/** Deliveries, pending ones, due rows, and deliveries pending without a due row or due without being pending. */
async function dueAndPending(): Promise<{
  total: string;
  pending: string;
  due: string;
  mismatched: string;
  failed: string;
  unlisted: string;
  orphans: string;
}> {
  const catalog = new pg.Client({ connectionString: postgres.url });
  await catalog.connect();
  const { rows } = await catalog
    .query(
      `select (select count(*) from webhook_deliveries) as total,
              (select count(*) from webhook_deliveries where status = 'pending') as pending,
              (select count(*) from webhook_due) as due,
              (select count(*) from webhook_deliveries d full join webhook_due q on q.delivery_id = d.id
                where (d.status = 'pending') is distinct from (q.delivery_id is not null and d.id is not null)
              ) as mismatched,
              (select count(*) from webhook_deliveries where status = 'failed') as failed,
              -- Failed deliveries the delivery log's failed rows do not name (migration 0035).
              (select count(*) from webhook_deliveries d where d.status = 'failed'
                  and not exists (select 1 from webhook_failed f where f.delivery_id = d.id)) as unlisted,
              (select count(*) from webhook_failed f
                where not exists (select 1 from webhook_deliveries d where d.id = f.delivery_id)) as orphans`,
    )
    .finally(() => catalog.end());
  return rows[0];
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-webhooks-'));
  postgres = await startEmbeddedPostgres(join(root, 'pg'), pino({ level: 'silent' }), await freePort());
  const shared = {
    IMAGELAKE_DATABASE_URL: postgres.url,
    IMAGELAKE_LAKE_URL: `file://${join(root, 'lake')}`,
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_WORKER_THREADS: '1',
  };
  env = {
    ...shared,
    IMAGELAKE_DATA_DIR: join(root, 'dispatcher'),
    // The receivers are local: http on 127.0.0.1.
    IMAGELAKE_WEBHOOK_ALLOW_HTTP: 'true',
    IMAGELAKE_WEBHOOK_ALLOW_PRIVATE: 'true',
    IMAGELAKE_WEBHOOK_TIMEOUT: '2s',
    IMAGELAKE_WEBHOOK_ENDPOINT_CONCURRENCY: '2',
  };
  platform = await startTestServer(env, ['api', 'worker', 'scheduler'], clock);
  strict = await startTestServer(shared, ['api']);
  await startDispatcher();
});

after(async () => {
  dispatcher?.kill('SIGKILL');
  for (const r of receivers) await r.stop();
  await strict?.stop();
  await platform?.stop();
  await postgres?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('webhooks', () => {
  let acme: { id: string; apiKey: string };
  let acmeHook: { id: string; secret: string };
  let acmeReceiver: Receiver;

  it("delivers an image's events to its customer's endpoint, signed per Standard Webhooks, and to no other customer", async () => {
    acme = await createCustomer(platform.url, 'Acme');
    const other = await createCustomer(platform.url, 'Other');
    acmeReceiver = await receiver();
    const otherReceiver = await receiver();
    acmeHook = await register(acme.apiKey, acmeReceiver.url, ['image.received', 'image.processed']);
    assert.match(acmeHook.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    await register(other.apiKey, otherReceiver.url, ['image.received', 'image.processed', 'image.failed']);

    // The secret is shown once; another customer does not see the endpoint at all.
    const shown = await api(platform.url, acme.apiKey, 'GET', `/v1/webhooks/${acmeHook.id}`);
    assert.equal(shown.status, 200);
    assert.equal(shown.body.secret, undefined);
    assert.equal((await api(platform.url, other.apiKey, 'GET', `/v1/webhooks/${acmeHook.id}`)).status, 404);

    const landed = await upload(platform.url, acme.apiKey, await jpeg());
    assert.equal(landed.status, 202);
    await settled(platform.url, acme.apiKey, landed.body.id);
    const [processed] = await until(
      'image.processed',
      async () => acmeReceiver.of('image.processed').length > 0 && acmeReceiver.of('image.processed'),
    );
    const event = verify(acmeHook.secret, processed!);
    assert.equal(event.type, 'image.processed');
    const image = await api(platform.url, acme.apiKey, 'GET', `/v1/images/${landed.body.id}`);
    assert.deepEqual(event.data, image.body, 'the data is what GET /v1/images/{id} shows');
    assert.match(processed!.headers['webhook-signature'] as string, /^v1,[A-Za-z0-9+/]+=*$/);
    assert.equal(processed!.headers.traceparent, undefined, 'tracing is off: no trace context is sent');

    const [received] = acmeReceiver.of('image.received');
    assert.equal(verify(acmeHook.secret, received!).data.status, 'received');

    // A tampered body does not verify.
    assert.throws(() =>
      verify(acmeHook.secret, { ...processed!, body: processed!.body.replace('processed', 'failed') }),
    );

    // Attempts are recorded a moment after the receiver answers (in batches).
    const log = await until('both recorded', async () => {
      const rows = await deliveries(acme.apiKey, acmeHook.id);
      return rows.every((d: any) => d.status !== 'pending') && rows;
    });
    assert.equal(log.length, 2);
    for (const d of log) {
      assert.equal(d.status, 'delivered');
      assert.equal(d.attemptLog[0].statusCode, 200);
      assert.ok(acmeReceiver.received.some((r) => r.headers['webhook-id'] === d.messageId));
    }
    assert.equal(otherReceiver.received.length, 0, "another customer's endpoint gets nothing of Acme's");
  });

  it("verifies with the README's example receiver", async () => {
    const port = await freePort();
    const hook = await register(acme.apiKey, `http://127.0.0.1:${port}/`, ['image.failed']);
    const child = spawn(process.execPath, [EXAMPLE_RECEIVER, String(port)], {
      env: { ...process.env, WEBHOOK_SECRET: hook.secret },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let printed = '';
    child.stdout.on('data', (d) => {
      printed += d;
    });
    try {
      await until('the receiver to listen', async () => printed.includes('receiving on'));
      const id = await sendTest(acme.apiKey, hook.id);
      await until('a verified event', async () =>
        printed.includes(`verified webhook.test (webhook-id ${id})`),
      );
    } finally {
      child.kill();
    }
  });

  it('delivers to a receiver that was down when it comes back, on the retry schedule, with the same webhook-id', async () => {
    const down = new Receiver();
    receivers.push(down);
    down.port = await freePort();
    const hook = await register(acme.apiKey, down.url, ['image.failed']);
    const id = await sendTest(acme.apiKey, hook.id);
    const first = await until('the first attempt', async () => {
      const d = await delivery(acme.apiKey, hook.id, id);
      return d?.attempts === 1 && d;
    });
    assert.equal(first.status, 'pending');
    assert.equal(first.attemptLog[0].statusCode, null);
    assert.match(first.attemptLog[0].error, /ECONNREFUSED/);
    assert.ok(first.nextAttemptAt, 'the log shows the next attempt');
    await down.start();
    const done = await until('the retry', async () => {
      const d = await delivery(acme.apiKey, hook.id, id);
      return d?.status === 'delivered' && d;
    });
    assert.equal(done.attempts, 2);
    assert.ok(Date.parse(done.attemptLog[1].at) - Date.parse(done.attemptLog[0].at) >= 4500, 'the 5 s step');
    assert.equal(down.received.length, 1);
    assert.equal(down.received[0]!.headers['webhook-id'], id);
    assert.equal(verify(hook.secret, down.received[0]!).type, 'webhook.test');
  });

  it("honours a 429's Retry-After instead of the schedule's step", async () => {
    const busy = await receiver();
    busy.answer = (_, response) => {
      if (busy.received.length === 1) response.writeHead(429, { 'retry-after': '1' }).end();
      else response.end();
    };
    const hook = await register(acme.apiKey, busy.url, ['image.failed']);
    const id = await sendTest(acme.apiKey, hook.id);
    await until('two attempts', async () => busy.received.length >= 2);
    const [a, b] = busy.received;
    assert.equal(a!.headers['webhook-id'], id);
    assert.equal(b!.headers['webhook-id'], id);
    const gap = b!.at - a!.at;
    assert.ok(gap >= 900 && gap < 4500, `retried after ${gap} ms: Retry-After 1 s, not the 5 s step`);
    const d = await until('delivered', async () => {
      const row = await delivery(acme.apiKey, hook.id, id);
      return row?.status === 'delivered' && row;
    });
    assert.deepEqual(
      d.attemptLog.map((x: any) => x.statusCode),
      [429, 200],
    );
  });

  it('disables an endpoint that answers 410; re-enabled, a replay of the range sends what failed', async () => {
    const gone = await receiver();
    gone.answer = (_, response) => response.writeHead(410).end();
    const hook = await register(acme.apiKey, gone.url, ['image.failed']);
    const id = await sendTest(acme.apiKey, hook.id);
    const disabled = await until('disabled', async () => {
      const { body } = await api(platform.url, acme.apiKey, 'GET', `/v1/webhooks/${hook.id}`);
      return body.enabled === false && body;
    });
    assert.match(disabled.disabledReason, /410/);
    assert.equal((await delivery(acme.apiKey, hook.id, id)).status, 'failed');
    const refused = await api(platform.url, acme.apiKey, 'POST', `/v1/webhooks/${hook.id}/test`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'WEBHOOK_DISABLED');
    const listed = async (status: string) =>
      (await deliveries(acme.apiKey, hook.id, `?status=${status}`)).map((d) => d.id);
    assert.deepEqual(await listed('failed'), [id], 'the delivery log lists it as failed');

    gone.answer = (_, response) => response.end();
    const enabled = await api(platform.url, acme.apiKey, 'PATCH', `/v1/webhooks/${hook.id}`, {
      enabled: true,
    });
    assert.equal(enabled.body.enabled, true);
    assert.equal(enabled.body.disabledReason, null);
    const replay = await api(platform.url, acme.apiKey, 'POST', `/v1/webhooks/${hook.id}/replay`, {
      from: new Date(Date.now() - 3_600_000).toISOString(),
      to: new Date(Date.now() + 60_000).toISOString(),
      status: 'failed',
    });
    assert.equal(replay.status, 202);
    assert.equal(replay.body.replayed, 1);
    await until('the replay', async () => gone.received.length === 2);
    assert.equal(gone.received[1]!.headers['webhook-id'], id);
    await until(
      'recorded delivered',
      async () => (await delivery(acme.apiKey, hook.id, id)).status === 'delivered',
    );
    assert.deepEqual(await listed('failed'), [], 'failed no more');
    assert.deepEqual(await listed('delivered'), [id]);
  });

  it('replays one delivery with its own webhook-id', async () => {
    const [first] = await deliveries(acme.apiKey, acmeHook.id, '?status=delivered&limit=1');
    const before = acmeReceiver.received.filter((r) => r.headers['webhook-id'] === first.id).length;
    const replay = await api(
      platform.url,
      acme.apiKey,
      'POST',
      `/v1/webhooks/${acmeHook.id}/deliveries/${first.id}/replay`,
    );
    assert.equal(replay.status, 202);
    assert.equal(replay.body.status, 'pending');
    await until(
      'the replayed delivery',
      async () =>
        acmeReceiver.received.filter((r) => r.headers['webhook-id'] === first.id).length === before + 1,
    );
    const unknown = await api(
      platform.url,
      acme.apiKey,
      'POST',
      `/v1/webhooks/${acmeHook.id}/deliveries/00000000-0000-4000-8000-000000000000/replay`,
    );
    assert.equal(unknown.status, 404);
  });

  it('signs with the old and the new secret after a rotation', async () => {
    const rotated = await api(platform.url, acme.apiKey, 'POST', `/v1/webhooks/${acmeHook.id}/rotate-secret`);
    assert.equal(rotated.status, 200);
    assert.notEqual(rotated.body.secret, acmeHook.secret);
    assert.ok(Date.parse(rotated.body.previousSecretExpiresAt) - Date.now() > 23 * 3_600_000);
    const id = await sendTest(acme.apiKey, acmeHook.id);
    const message = await until('the test event', async () =>
      acmeReceiver.received.find((r) => r.headers['webhook-id'] === id),
    );
    assert.equal(verify(rotated.body.secret, message).type, 'webhook.test');
    assert.equal(verify(acmeHook.secret, message).type, 'webhook.test');
    assert.equal((message.headers['webhook-signature'] as string).split(' ').length, 2);
    acmeHook = { id: acmeHook.id, secret: rotated.body.secret };
  });

  it('follows no redirect, and reads a long answer only up to its bound', async () => {
    const elsewhere = await receiver();
    const redirecting = await receiver();
    redirecting.answer = (_, response) => response.writeHead(302, { location: elsewhere.url }).end();
    const chatty = await receiver();
    chatty.answer = (_, response) => response.end(Buffer.alloc(1 << 20, 'x'));
    const moved = await register(acme.apiKey, redirecting.url, ['image.failed']);
    const long = await register(acme.apiKey, chatty.url, ['image.failed']);
    const movedId = await sendTest(acme.apiKey, moved.id);
    const longId = await sendTest(acme.apiKey, long.id);
    const failed = await until('the redirect answered', async () => {
      const d = await delivery(acme.apiKey, moved.id, movedId);
      return d?.status === 'failed' && d;
    });
    assert.deepEqual(
      failed.attemptLog.map((a: any) => a.statusCode),
      [302],
      'a 3xx fails the delivery: it is not retried',
    );
    assert.equal(elsewhere.received.length, 0, 'the Location is never asked');
    const delivered = await until('the long answer', async () => {
      const d = await delivery(acme.apiKey, long.id, longId);
      return d?.status === 'delivered' && d;
    });
    assert.equal(delivered.attemptLog[0].statusCode, 200);
  });

  it("gives up on a receiver that does not answer within the timeout, and sends a URL's credentials as Basic auth", async () => {
    const silent = await receiver();
    silent.answer = () => {};
    const sender = new Sender({ timeoutMs: 300, allowPrivate: true, socketsPerHost: 2 });
    try {
      const unanswered = await sender.send(silent.url, {}, '{}');
      assert.equal(unanswered.verdict, 'retry', 'a timeout is tried again');
      assert.equal(unanswered.error, 'no answer within 300 ms');
      assert.ok(unanswered.latencyMs >= 290 && unanswered.latencyMs < 2000, `${unanswered.latencyMs} ms`);
      // Three at once on two connections: the third waits for one, and its timeout counts from the start.
      const together = await Promise.all([1, 2, 3].map(() => sender.send(silent.url, {}, '{}')));
      for (const attempt of together) {
        assert.equal(attempt.error, 'no answer within 300 ms');
        assert.ok(attempt.latencyMs < 1000, `${attempt.latencyMs} ms`);
      }
      // A status, then a body that never ends: the status stands, the attempt still ends in time.
      const stalling = await receiver();
      stalling.answer = (_, response) => response.writeHead(200).write('partial');
      const stalled = await sender.send(stalling.url, {}, '{}');
      assert.equal(stalled.verdict, 'delivered');
      assert.ok(stalled.latencyMs >= 290 && stalled.latencyMs < 2000, `${stalled.latencyMs} ms`);
      const guarded = await receiver();
      const withCredentials = guarded.url.replace('http://', 'http://hooks:s%3Acret@');
      assert.equal((await sender.send(withCredentials, {}, '{}')).verdict, 'delivered');
      assert.equal(
        guarded.received[0]!.headers.authorization,
        `Basic ${Buffer.from('hooks:s:cret').toString('base64')}`,
      );
      assert.equal((await sender.send('not a url', {}, '{}')).error, 'the URL is not valid');
    } finally {
      sender.close();
    }
  });

  it("counts attempts, their time and the backlog in the dispatcher's /metrics", async () => {
    const text = await (await fetch(`${dispatcherUrl}/metrics`)).text();
    const delivered = /^imagelake_webhook_attempts_total\{outcome="delivered"\} (\d+)/m.exec(text);
    assert.ok(delivered && Number(delivered[1]) > 0, text);
    assert.match(text, /^imagelake_webhook_attempts_total\{outcome="failed"\} [1-9]/m);
    assert.match(text, /^imagelake_webhook_delivery_seconds_bucket\{le="[^"]+",outcome="delivered"\} \d+/m);
    assert.match(text, /^imagelake_webhook_backlog \d+/m);
    assert.doesNotMatch(text, /^imagelake_webhook_\w+\{[^}]*customer/m, 'no customer label');
  });

  it('refuses loopback, metadata and private addresses, at registration and at delivery', async () => {
    const customer = await createCustomer(strict.url, 'Strict');
    for (const [url, code] of [
      ['https://127.0.0.1/hook', 'WEBHOOK_URL_FORBIDDEN'],
      ['https://169.254.169.254/latest/meta-data/', 'WEBHOOK_URL_FORBIDDEN'],
      ['https://localhost/hook', 'WEBHOOK_URL_FORBIDDEN'],
      ['https://[::1]/hook', 'WEBHOOK_URL_FORBIDDEN'],
      ['https://10.1.2.3/hook', 'WEBHOOK_URL_FORBIDDEN'],
      ['http://example.com/hook', 'WEBHOOK_URL_INVALID'],
      ['https://user:password@example.com/hook', 'WEBHOOK_URL_INVALID'],
      ['https://no-such-host.invalid/hook', 'WEBHOOK_URL_INVALID'],
    ]) {
      const { status, body } = await api(strict.url, customer.apiKey, 'POST', '/v1/webhooks', {
        url,
        events: ['image.processed'],
      });
      assert.equal(status, 400, url);
      assert.equal(body.error.code, code, url);
    }
    // At delivery: a name that resolves to 127.0.0.1 (a rebinding after registration) is never connected to.
    const target = await receiver();
    const sender = new Sender({ timeoutMs: 2000, allowPrivate: false, socketsPerHost: 1 });
    try {
      for (const url of [`http://localhost:${target.port}/hook`, `http://127.0.0.1:${target.port}/hook`]) {
        const result = await sender.send(url, {}, '{}');
        assert.equal(result.verdict, 'final', url);
        assert.match(result.error!, /refused/, url);
      }
    } finally {
      sender.close();
    }
    assert.equal(target.received.length, 0);
  });

  it('loses nothing when the dispatcher is killed with SIGKILL mid-delivery', async () => {
    const slow = await receiver();
    slow.answer = (_, response) => {
      if (slow.received.length > 1) response.end();
      // The first request is held unanswered: the dispatcher dies while it waits.
    };
    const hook = await register(acme.apiKey, slow.url, ['image.failed']);
    const id = await sendTest(acme.apiKey, hook.id);
    await until('the attempt in flight', async () => slow.received.length === 1);
    dispatcher!.kill('SIGKILL');
    await new Promise((resolve) => dispatcher!.once('exit', resolve));
    await startDispatcher();
    await until('the delivery again', async () => slow.received.length === 2);
    assert.equal(slow.received[1]!.headers['webhook-id'], id, 'the same webhook-id: receivers dedupe');
    const d = await until('recorded', async () => {
      const row = await delivery(acme.apiKey, hook.id, id);
      return row?.status === 'delivered' && row;
    });
    assert.equal(d.attempts, 1, 'the killed attempt left no record; the one that answered did');
  });

  it("keeps each endpoint's deliveries in flight within its limit, across two dispatcher processes", async () => {
    const second = await spawnServer(env, ['webhooks']);
    try {
      const held = await receiver();
      let inFlight = 0;
      let most = 0;
      held.answer = (_, response) => {
        inFlight++;
        most = Math.max(most, inFlight);
        setTimeout(() => {
          inFlight--;
          response.end();
        }, 400);
      };
      const hook = await register(acme.apiKey, held.url, ['image.failed']);
      for (let i = 0; i < 8; i++) await sendTest(acme.apiKey, hook.id);
      await until('every test event', async () => held.received.length === 8);
      assert.equal(most, 2, `at most IMAGELAKE_WEBHOOK_ENDPOINT_CONCURRENCY=2 at once (saw ${most})`);
    } finally {
      second.child.kill('SIGKILL');
    }
  });

  it('claims several rounds at once under a lease on the endpoint, and a stopping dispatcher lets it go', async () => {
    const third = await spawnServer(env, ['webhooks']);
    const held = await receiver();
    const answers: Array<() => void> = [];
    held.answer = (_, response) => answers.push(() => response.end());
    const hook = await register(acme.apiKey, held.url, ['image.failed']);
    const catalog = new pg.Client({ connectionString: postgres.url });
    await catalog.connect();
    const holder = async () =>
      (await catalog.query(`select dispatcher from webhook_endpoints where id = $1`, [hook.id])).rows[0]
        .dispatcher as string | null;
    const pending = async () =>
      Number(
        (
          await catalog.query(
            `select count(*) from webhook_deliveries where endpoint_id = $1 and status = 'pending'`,
            [hook.id],
          )
        ).rows[0].count,
      );
    try {
      // Every dispatcher but the third is stopped: it alone claims these.
      dispatcher!.kill('SIGKILL');
      await new Promise((resolve) => dispatcher!.once('exit', resolve));
      for (let i = 0; i < 6; i++) await sendTest(acme.apiKey, hook.id);
      // Claimed by one dispatcher, two sent (the endpoint's limit), four waiting their turn.
      await until('two in flight', async () => held.received.length === 2);
      const leasedTo = await holder();
      assert.ok(leasedTo, 'the endpoint is leased to the dispatcher sending its deliveries');
      third.child.kill('SIGTERM');
      // Stopping, it sends nothing more, waits for the two in flight, records them, and only then
      // lets the endpoint go.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(await holder(), leasedTo, 'held while attempts are in flight');
      for (const answer of answers.splice(0)) answer();
      await new Promise((resolve) => third.child.once('exit', resolve));
      assert.equal(await holder(), null, 'let go once the last attempt was recorded');
      assert.equal(await pending(), 4, 'the two answered were recorded; four wait');
      assert.equal(held.received.length, 2, 'nothing was sent after the stop began');
      await startDispatcher();
      held.answer = (_, response) => response.end();
      // Let go, the endpoint is the next dispatcher's at once (no lease to wait out).
      await until('all six', async () => held.received.length === 6);
      const ids = new Set(held.received.map((r) => r.headers['webhook-id']));
      assert.equal(ids.size, 6, 'each sent once');
    } finally {
      await catalog.end();
      third.child.kill('SIGKILL');
      if (!dispatcher || dispatcher.exitCode !== null || dispatcher.signalCode !== null)
        await startDispatcher();
    }
  });

  it('records nothing for a dispatcher whose endpoint lease ran out: the one that took the endpoint sends again', async () => {
    const target = await receiver();
    const hook = await register(acme.apiKey, target.url, ['image.failed']);
    const { db } = platform.server;
    const nothingHeld = { ids: new Map<string, string[]>(), byEndpoint: new Map<string, number>() };
    try {
      // The test claims in place of the dispatcher process, which is stopped meanwhile.
      dispatcher!.kill('SIGKILL');
      await new Promise((resolve) => dispatcher!.once('exit', resolve));
      const id = await sendTest(acme.apiKey, hook.id);
      const [first, second] = ['a', 'b'].map((c) => `${c.repeat(8)}-0000-4000-8000-${c.repeat(12)}`);
      const claim = (holder: string) =>
        claimDue(db, { holder, limit: 10, ahead: 10, leaseMs: 400, held: nothingHeld }).then((ds) =>
          ds.filter((d) => d.endpointId === hook.id).map((d) => d.id),
        );
      assert.deepEqual(await claim(first!), [id]);
      assert.deepEqual(await claim(second!), [], 'leased: no other dispatcher takes the endpoint');
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.deepEqual(await claim(second!), [id], 'the lease ran out: another dispatcher takes it all');
      const attempt = { at: new Date().toISOString(), statusCode: 204, error: null, latencyMs: 1 };
      const next = { status: 'delivered' as const, nextAttemptAt: null };
      assert.equal(
        (await recordAttempts(db, first!, [{ id, endpointId: hook.id, attempt, next }])).size,
        0,
        'the first lost it',
      );
      assert.deepEqual(
        [...(await recordAttempts(db, second!, [{ id, endpointId: hook.id, attempt, next }]))],
        [id],
      );
      assert.equal((await delivery(acme.apiKey, hook.id, id)).attempts, 1);
    } finally {
      await startDispatcher();
    }
  });

  it("shares a claim's room among the endpoints with deliveries due", async () => {
    const [first, second] = [await receiver(), await receiver()];
    const hooks = [
      await register(acme.apiKey, first.url, ['image.failed']),
      await register(acme.apiKey, second.url, ['image.failed']),
    ];
    const { db } = platform.server;
    try {
      dispatcher!.kill('SIGKILL');
      await new Promise((resolve) => dispatcher!.once('exit', resolve));
      for (const hook of hooks) for (let i = 0; i < 4; i++) await sendTest(acme.apiKey, hook.id);
      const claimed = await claimDue(db, {
        holder: 'cccccccc-0000-4000-8000-cccccccccccc',
        limit: 4,
        ahead: 256,
        leaseMs: 60_000,
        held: { ids: new Map(), byEndpoint: new Map() },
      });
      const of = (hookId: string) => claimed.filter((d) => d.endpointId === hookId).length;
      assert.deepEqual(
        hooks.map((h) => of(h.id)),
        [2, 2],
        'two each, not four to the first and none to the second',
      );
      // Let the endpoints go, for the dispatcher that starts below.
      await releaseEndpoints(db, 'cccccccc-0000-4000-8000-cccccccccccc');
    } finally {
      await startDispatcher();
    }
    await until('all eight', async () => first.received.length === 4 && second.received.length === 4);
  });

  it('disables an endpoint whose every attempt has failed for five days', async () => {
    const down = new Receiver();
    down.port = await freePort();
    const hook = await register(acme.apiKey, down.url, ['image.failed']);
    // Its failures began six days ago, as if the retries of older deliveries had all failed since.
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    await client.query(
      `update webhook_endpoints set failing_since = now() - interval '6 days' where id = $1`,
      [hook.id],
    );
    await client.end();
    const id = await sendTest(acme.apiKey, hook.id);
    const disabled = await until('disabled', async () => {
      const { body } = await api(platform.url, acme.apiKey, 'GET', `/v1/webhooks/${hook.id}`);
      return body.enabled === false && body;
    });
    assert.match(disabled.disabledReason, /every attempt failed since/);
    assert.equal((await delivery(acme.apiKey, hook.id, id)).status, 'failed');
  });

  // After deliveries, retries, a disabled endpoint, replays and a killed dispatcher (and, in the next
  // test, erasure and the purge): what is due is exactly what is pending (migration 0034).
  it('keeps a due row for every pending delivery and for no other', async () => {
    const counts = await dueAndPending();
    assert.ok(Number(counts.total) > 10, `deliveries: ${counts.total}`);
    assert.equal(counts.mismatched, '0', JSON.stringify(counts));
    assert.equal(counts.pending, counts.due);
    assert.ok(Number(counts.failed) > 0, 'some failed: the 410, the timeout, the disabled endpoints');
    assert.equal(counts.unlisted, '0', 'every failed delivery has its row in webhook_failed');
    assert.equal(counts.orphans, '0');
    const panel = await panelMismatches();
    assert.ok(panel.customers >= 1, `customers with deliveries: ${panel.customers}`);
    assert.deepEqual(panel.mismatches, [], "the operators' panel counts every delivery by its status");
  });

  it('erasure and the purge delete deliveries with their image, say so in the receipt, and tell the endpoint', async () => {
    const ends = await receiver();
    const hook = await register(acme.apiKey, ends.url, ['image.processed', 'image.erased', 'image.expired']);
    const erased = await upload(platform.url, acme.apiKey, await jpeg({ seed: 1 }));
    const expiring = await upload(platform.url, acme.apiKey, await jpeg({ seed: 2 }));
    await settled(platform.url, acme.apiKey, erased.body.id);
    await settled(platform.url, acme.apiKey, expiring.body.id);
    await until('both processed events', async () => ends.of('image.processed').length === 2);

    const receipt = await api(platform.url, acme.apiKey, 'DELETE', `/v1/images/${erased.body.id}`);
    assert.equal(receipt.status, 200);
    // Its image.received and image.processed deliveries to Acme's first endpoint, and image.processed here.
    assert.equal(receipt.body.deleted['webhook-delivery'].count, 3);
    const [gone] = await until(
      'image.erased',
      async () => ends.of('image.erased').length > 0 && ends.of('image.erased'),
    );
    const told = verify(hook.secret, gone!);
    assert.equal(told.data.id, erased.body.id);
    assert.equal(told.data.metadata, undefined, 'an erased image is told of by id only');
    const left = await deliveries(acme.apiKey, hook.id, '?limit=200');
    assert.deepEqual(
      left.filter((d) => d.payload.data.id === erased.body.id).map((d) => d.eventType),
      ['image.erased'],
    );

    clock.advance(8 * DAY);
    const purge = await platform.server.purgeNow();
    assert.ok(purge);
    assert.ok((purge.body.deleted['webhook-delivery']?.count ?? 0) >= 3, JSON.stringify(purge.body.deleted));
    const after = await deliveries(acme.apiKey, hook.id, '?limit=200');
    // Both of Acme's images still held expired (this test's and the first test's): each is told.
    assert.deepEqual(
      after.map((d) => d.eventType),
      ['image.expired', 'image.expired'],
      'every delivery past its window went; the expiry is told',
    );
    assert.ok(after.some((d) => d.payload.data.id === expiring.body.id));

    const report = await audit({
      db: platform.server.db,
      lake: platform.server.lake,
      clock,
      retentionMs: 7 * DAY,
      statsRetentionMs: 400 * DAY,
    });
    assert.deepEqual(
      report.findings.filter((f) => f.kind.endsWith('-deliveries')),
      [],
    );
    const counts = await dueAndPending();
    assert.equal(counts.mismatched, '0', 'the purge took the due rows of what it deleted');
    assert.equal(counts.orphans, '0', 'and their failed rows');
    assert.deepEqual((await panelMismatches()).mismatches, [], "and the panel's counts of them");
  });
});
