import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, createCustomer, freePort, settled, spawnServer, until, upload } from './harness.ts';
import { brokers, createTopics, produce } from './kafka-broker.ts';
import { s3Service } from './s3-service.ts';

// A PostgreSQL of the test's own on a fixed port, so it can be stopped and started again at the
// same URL while the platform's processes keep running against it, as a managed one restarts.
let root: string;
let pgDir: string;
let pgPort: number;
let postgres: EmbeddedDatabase | undefined;
const s3 = s3Service();
const children: ChildProcess[] = [];
let env: Record<string, string>;
const silent = pino({ level: 'silent' });

async function startPostgres(): Promise<void> {
  postgres = await startEmbeddedPostgres(pgDir, silent, pgPort);
}

async function stopPostgres(): Promise<void> {
  await postgres?.stop();
  postgres = undefined;
}

/** One query on a connection of its own, which a restart cannot leave stale. */
async function query<T>(text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: postgres!.url });
  await client.connect();
  try {
    return (await client.query(text)).rows as T[];
  } finally {
    await client.end();
  }
}

async function spawn(roles: string[], extra: Record<string, string> = {}) {
  const server = await spawnServer({ ...env, ...extra }, roles);
  children.push(server.child);
  // A process that dies on its own is a finding: show what it said.
  server.child.once('exit', (code) => {
    if (code) console.error(`imagelake ${roles.join(',')} exited with ${code}:\n${server.output()}`);
  });
  return server;
}

async function stopChild(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  return exited;
}

async function scrape(url: string, metric: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = new RegExp(`^${metric} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-faults-'));
  pgDir = join(root, 'external');
  pgPort = await freePort();
  await startPostgres();
  env = {
    ...s3.env,
    IMAGELAKE_DATABASE_URL: postgres!.url,
    IMAGELAKE_LAKE_URL: `s3://imagelake/faults-${randomUUID()}`,
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_DATA_DIR: join(root, 'unused'),
    IMAGELAKE_WORKER_THREADS: '1',
    IMAGELAKE_WORKER_CONCURRENCY: '2',
    // A job in hand when PostgreSQL went away could record neither its outcome nor its retry; it
    // is taken again when its lease runs out, so a short lease keeps these tests short.
    IMAGELAKE_JOB_LEASE: '3s',
  };
});

after(async () => {
  await Promise.all(children.map((child) => stopChild(child)));
  if (!postgres) await startPostgres().catch(() => {});
  await stopPostgres();
  s3.stop();
  await rm(root, { recursive: true, force: true });
});

describe('a PostgreSQL outage', () => {
  it('answers 503 CATALOG_UNAVAILABLE with Retry-After while PostgreSQL is stopped, and the same upload lands once it is back', async () => {
    const apiServer = await spawn(['api']);
    const worker = await spawn(['worker']);
    const customer = await createCustomer(apiServer.url, 'Outage');
    const bytes = await jpeg({ width: 40, height: 30, seed: 7100 });
    const post = (key: string) =>
      fetch(`${apiServer.url}/v1/images`, {
        method: 'POST',
        headers: { authorization: `Bearer ${customer.apiKey}`, 'idempotency-key': key },
        body: new Uint8Array(bytes),
      });
    const before = await post('before-outage');
    assert.equal(before.status, 202);
    const first = (await before.json()) as { id: string };

    await stopPostgres();
    const refused = await post('during-outage');
    const body = (await refused.json()) as { error: { code: string; message: string } };
    assert.equal(refused.status, 503, JSON.stringify(body));
    assert.equal(body.error.code, 'CATALOG_UNAVAILABLE');
    assert.match(body.error.message, /retry/i);
    assert.equal(refused.headers.get('retry-after'), '5');
    // Reads fail the same way: the key itself cannot be checked without the catalog.
    const read = await fetch(`${apiServer.url}/v1/images/${first.id}`, {
      headers: { authorization: `Bearer ${customer.apiKey}` },
    });
    assert.equal(read.status, 503);
    assert.equal(((await read.json()) as { error: { code: string } }).error.code, 'CATALOG_UNAVAILABLE');
    assert.equal((await fetch(`${apiServer.url}/readyz`)).status, 503);

    await startPostgres();
    // Retried as the answer says, with the same Idempotency-Key, until PostgreSQL takes sessions again.
    const landed = await until('the refused upload lands on retry', async () => {
      const again = await post('during-outage');
      if (again.status === 202) return (await again.json()) as { id: string };
      const code = ((await again.json()) as { error: { code: string } }).error.code;
      assert.deepEqual([again.status, code], [503, 'CATALOG_UNAVAILABLE']);
      return undefined;
    });
    for (const id of [first.id, landed.id])
      assert.equal((await settled(apiServer.url, customer.apiKey, id)).status, 'processed');
    const rows = await query<{ n: string }>(
      `select count(*) as n from images where customer_id = '${customer.id}' and status = 'processed'`,
    );
    assert.equal(Number(rows[0]!.n), 2, 'the refused upload left nothing behind; its retry landed once');
    await stopChild(worker.child);
    await stopChild(apiServer.child);
  });

  it('uploads in flight across a fast restart get 202 or CATALOG_UNAVAILABLE, never 500, and each lands once', async (t) => {
    const apiServer = await spawn(['api']);
    const worker = await spawn(['worker']);
    const customer = await createCustomer(apiServer.url, 'Restart');
    const images = await Promise.all(
      Array.from({ length: 4 }, (_, i) => jpeg({ width: 40, height: 30, seed: 7200 + i })),
    );
    let restarted = false;
    const counts = { accepted: 0, refusedAsCatalogUnavailable: 0 };
    const others: string[] = [];
    const accepted = new Set<string>();
    const lane = async (lane: number) => {
      // Uploads go on until the restart is over, and five more each after it.
      for (let i = 0, afterwards = 0; afterwards < 5; i++) {
        if (restarted) afterwards++;
        const key = `restart-${lane}-${i}`;
        for (;;) {
          const response = await fetch(`${apiServer.url}/v1/images`, {
            method: 'POST',
            headers: { authorization: `Bearer ${customer.apiKey}`, 'idempotency-key': key },
            body: new Uint8Array(images[i % images.length]!),
          }).catch((error: Error) => error);
          if (response instanceof Error) {
            others.push(`${key}: ${response.message}`);
            break;
          }
          const body = (await response.json()) as { id?: string; error?: { code: string } };
          if (response.status === 202) {
            counts.accepted++;
            accepted.add(body.id!);
            break;
          }
          if (response.status === 503 && body.error?.code === 'CATALOG_UNAVAILABLE') {
            counts.refusedAsCatalogUnavailable++;
            continue;
          }
          others.push(`${key}: ${response.status} ${JSON.stringify(body)}`);
          break;
        }
      }
    };
    const lanes = Promise.all([0, 1, 2, 3].map(lane));
    await until('uploads under way', async () => counts.accepted >= 8);
    await stopPostgres();
    await startPostgres();
    restarted = true;
    await lanes;

    assert.deepEqual(others, [], 'every answer was 202 or 503 CATALOG_UNAVAILABLE');
    t.diagnostic(
      `${counts.accepted} accepted, ${counts.refusedAsCatalogUnavailable} CATALOG_UNAVAILABLE answers retried`,
    );
    assert.equal(accepted.size, counts.accepted, 'each upload was accepted once, under an id of its own');
    await until('every accepted image processed', async () => {
      const rows = await query<{ n: string }>(
        `select count(*) as n from images where customer_id = '${customer.id}' and status = 'processed'`,
      );
      return Number(rows[0]!.n) === accepted.size;
    });
    const [row] = await query<{ images: string; facts: string }>(
      `select (select count(*) from images where customer_id = '${customer.id}') as images,
              (select count(*) from analytics.facts where customer_id = '${customer.id}') as facts`,
    );
    assert.deepEqual(
      { images: Number(row!.images), facts: Number(row!.facts) },
      { images: accepted.size, facts: accepted.size },
      `each accepted image landed and was counted once (${counts.refusedAsCatalogUnavailable} answers were CATALOG_UNAVAILABLE and retried)`,
    );
    await stopChild(worker.child);
    await stopChild(apiServer.child);
  });
});

describe('every role through a PostgreSQL outage', () => {
  it('api, worker, scheduler, kafka and webhooks keep running while it is stopped, their loops ticking, and catch up once it is back', async () => {
    const { bootstrap, stop: stopBroker } = brokers();
    const topic = `outage-${randomUUID()}`;
    const events = `outage-events-${randomUUID()}`;
    await createTopics(bootstrap, [topic, events], 1);
    // Both schedules every second, so their ticks fall in the outage (a tick that could not take its
    // lock ended the process).
    const server = await spawn(['api', 'worker', 'scheduler', 'kafka', 'webhooks'], {
      IMAGELAKE_PURGE_INTERVAL: '1s',
      IMAGELAKE_EXPORT_INTERVAL: '1s',
      IMAGELAKE_KAFKA_BROKERS: bootstrap,
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_GROUP: `outage-${randomUUID()}`,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: events,
      // The recoveries are said at info.
      IMAGELAKE_LOG_LEVEL: 'info',
    });
    try {
      const customer = await createCustomer(server.url, 'Every role');
      const claimFailures = () =>
        server.output().split('webhook dispatcher could not claim deliveries').length - 1;
      await stopPostgres();
      const stoppedAt = Date.now();
      try {
        // A message that comes while the catalog is away waits in Kafka, uncommitted.
        await produce(bootstrap, topic, [
          {
            value: await jpeg({ width: 40, height: 30, seed: 7401 }),
            headers: { 'customer-id': customer.id, 'message-id': 'during-the-outage' },
          },
        ]);
        const ticked = () => server.output().split('could not take its lock').length - 1;
        await until('scheduled ticks skipped in the outage', async () => ticked() >= 4, 30_000);
        await until('six seconds of outage', async () => Date.now() - stoppedAt >= 6000);
        assert.equal(server.child.exitCode, null, server.output());
        // The dispatcher backs off (0.25, 0.5, 1, 2, 4 s...): a handful of lines, not four a second.
        const failed = claimFailures();
        assert.ok(failed >= 2 && failed <= 8, `${failed} failed claims logged in the outage`);
        assert.equal((await fetch(`${server.url}/readyz`)).status, 503);
      } finally {
        await startPostgres();
      }
      const bytes = await jpeg({ width: 40, height: 30, seed: 7400 });
      const landed = await until('an upload lands once PostgreSQL is back', async () => {
        const { status, body } = await upload(server.url, customer.apiKey, bytes);
        return status === 202 ? (body as { id: string }) : undefined;
      });
      assert.equal((await settled(server.url, customer.apiKey, landed.id)).status, 'processed');
      const streamed = await until('the message of the outage landed and processed', async () => {
        const rows = await query<{ status: string }>(
          `select status from images where customer_id = '${customer.id}' and source = 'kafka'`,
        );
        return rows.length === 1 && rows[0]!.status === 'processed' ? rows : undefined;
      });
      assert.equal(streamed.length, 1);
      await until(
        'the dispatcher claims again',
        async () => server.output().includes('webhook dispatcher claims again'),
        30_000,
      );
      assert.equal(await stopChild(server.child), 0, server.output());
    } finally {
      await stopChild(server.child);
      stopBroker();
    }
  });
});

describe("the workers' LISTEN session", () => {
  it('comes back after PostgreSQL restarts, fast or after a while, with exactly one session per worker', async () => {
    // Polling is made too slow to matter: only a notification can get these images processed in time.
    const slowPoll = { IMAGELAKE_POLL_INTERVAL: '10m' };
    const workers = [await spawn(['worker'], slowPoll), await spawn(['worker'], slowPoll)];
    const apiServer = await spawn(['api']);
    const customer = await createCustomer(apiServer.url, 'Listen');
    const listening = async () =>
      Number(
        (
          await query<{ n: string }>(
            `select count(*) as n from pg_stat_activity where query = 'LISTEN imagelake_jobs'`,
          )
        )[0]!.n,
      );
    const connected = async () =>
      (await Promise.all(workers.map((w) => scrape(w.url, 'imagelake_job_listener_connected')))).every(
        (v) => v === 1,
      );
    const reconnects = async () =>
      Promise.all(
        workers.map(async (w) => (await scrape(w.url, 'imagelake_job_listener_reconnects_total')) ?? 0),
      );
    const processedOnNotice = async (seed: number) => {
      const response = await fetch(`${apiServer.url}/v1/images`, {
        method: 'POST',
        headers: { authorization: `Bearer ${customer.apiKey}` },
        body: new Uint8Array(await jpeg({ width: 40, height: 30, seed })),
      });
      assert.equal(response.status, 202);
      const { id } = (await response.json()) as { id: string };
      assert.equal((await settled(apiServer.url, customer.apiKey, id, 60_000)).status, 'processed');
    };

    await until('both workers listening', connected);
    assert.equal(await listening(), 2);
    await processedOnNotice(7300);

    // A fast restart: the old bug could open a second session here.
    await stopPostgres();
    await startPostgres();
    await until(
      'both workers listening again',
      async () => (await connected()) && (await reconnects()).every((n) => n >= 1),
    );
    assert.equal(await listening(), 2, 'one LISTEN session per worker after a fast restart');
    await processedOnNotice(7301);

    // A longer outage: reconnecting fails several times, and must keep being tried.
    const lostBefore = workers.map((w) => w.output().split('job notifications lost').length);
    await stopPostgres();
    await until('each worker retried and failed at least twice while PostgreSQL was down', async () =>
      workers.every((w, i) => w.output().split('job notifications lost').length >= lostBefore[i]! + 3),
    );
    for (const w of workers) assert.equal(await scrape(w.url, 'imagelake_job_listener_connected'), 0);
    await startPostgres();
    await until(
      'both workers listening after the outage',
      async () => (await connected()) && (await reconnects()).every((n) => n >= 2),
    );
    assert.equal(await listening(), 2, 'one LISTEN session per worker after a long outage');
    await processedOnNotice(7302);

    for (const w of workers) await stopChild(w.child);
    await stopChild(apiServer.child);
  });
});

describe('an api process sent SIGTERM under load', () => {
  it('drains: readiness first, requests in hand finished, new ones refused with SHUTTING_DOWN and Retry-After; no client request fails', async (t) => {
    const drainEnv = { IMAGELAKE_DRAIN_DELAY: '2s', IMAGELAKE_SHUTDOWN_GRACE: '60s' };
    const apis = [
      await spawn(['api'], drainEnv),
      await spawn(['api'], drainEnv),
      await spawn(['api'], drainEnv),
    ];
    const worker = await spawn(['worker']);
    const victim = apis[0]!;
    const customer = await createCustomer(apis[1]!.url, 'Drain');
    const images = await Promise.all(
      Array.from({ length: 6 }, (_, i) => jpeg({ width: 40, height: 30, seed: 7400 + i })),
    );
    const headers = (key: string) => ({ authorization: `Bearer ${customer.apiKey}`, 'idempotency-key': key });

    // The client is its own load balancer: it sends to the processes whose /readyz answers 200.
    const rotation = new Set(apis.map((a) => a.url));
    let probing = true;
    const prober = (async () => {
      while (probing) {
        for (const url of [...rotation]) {
          const ok = await fetch(`${url}/readyz`).then(
            (r) => r.ok,
            () => false,
          );
          if (!ok) rotation.delete(url);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const accepted = new Set<string>();
    const failures: string[] = [];
    const retried: Record<string, number> = {};
    let turn = 0;
    /** One upload as a client would do it: a retryable answer is retried, on the next process. */
    const uploadWithRetry = async (key: string, bytes: Buffer, first?: string) => {
      let url = first;
      for (let attempt = 0; attempt < 20; attempt++) {
        const rotating = [...rotation];
        url ??= rotating[turn++ % rotating.length]!;
        const response = await fetch(`${url}/v1/images`, {
          method: 'POST',
          headers: headers(key),
          body: new Uint8Array(bytes),
        }).catch((error: Error) => error);
        url = undefined;
        if (response instanceof Error) {
          failures.push(`${key}: ${response.message} ${String((response.cause as Error)?.message ?? '')}`);
          return undefined;
        }
        const body = (await response.json()) as { id?: string; error?: { code: string; message: string } };
        if (response.status === 202) {
          accepted.add(body.id!);
          return { id: body.id!, attempts: attempt + 1 };
        }
        const code = body.error?.code ?? '';
        if (
          response.status === 503 &&
          ['SHUTTING_DOWN', 'CATALOG_UNAVAILABLE', 'LAKE_UNAVAILABLE'].includes(code)
        ) {
          assert.ok(response.headers.get('retry-after'), `${code} says when to retry`);
          retried[code] = (retried[code] ?? 0) + 1;
          continue;
        }
        failures.push(`${key}: ${response.status} ${JSON.stringify(body)}`);
        return undefined;
      }
      failures.push(`${key}: still refused after 20 tries`);
      return undefined;
    };

    // An upload in hand at the signal: its headers and the first bytes are in, the rest comes later.
    const slowBytes = images[0]!;
    let finish: (() => void) | undefined;
    const slowBody = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(slowBytes.subarray(0, slowBytes.length - 100)));
        finish = () => {
          controller.enqueue(new Uint8Array(slowBytes.subarray(slowBytes.length - 100)));
          controller.close();
        };
      },
    });
    const slow = fetch(`${victim.url}/v1/images`, {
      method: 'POST',
      headers: headers('drain-slow'),
      body: slowBody,
      duplex: 'half',
    } as RequestInit);
    // Nothing else is sent to it yet: one request in hand is the slow upload (the scrape is not counted).
    await until(
      'the slow upload in hand',
      async () => (await scrape(victim.url, 'imagelake_http_requests_in_hand')) === 2,
    );

    let stopping = false;
    let sent = 0;
    const lanes = Promise.all(
      Array.from({ length: 6 }, async (_, lane) => {
        for (let i = 0; !stopping; i++) {
          sent++;
          await uploadWithRetry(`drain-${lane}-${i}`, images[i % images.length]!);
        }
      }),
    );
    await until('uploads going to every process', async () => accepted.size >= 30);

    const exited = new Promise<number | null>((resolve) =>
      victim.child.once('exit', (code) => resolve(code)),
    );
    victim.child.kill('SIGTERM');
    await until(
      'readiness answers 503 first',
      async () => (await fetch(`${victim.url}/readyz`)).status === 503,
    );
    assert.equal((await fetch(`${victim.url}/healthz`)).status, 200, 'still alive while draining');

    // After the drain delay, a request that reaches it anyway is refused in the documented shape.
    const refusal = await until('a new request refused with SHUTTING_DOWN', async () => {
      const response = await fetch(`${victim.url}/v1/images`, {
        method: 'POST',
        headers: headers(`drain-late-${randomUUID()}`),
        body: new Uint8Array(images[1]!),
      });
      const body = (await response.json()) as { id?: string; error?: { code: string; message: string } };
      if (response.status === 202) {
        accepted.add(body.id!);
        return undefined;
      }
      return { status: response.status, body, retryAfter: response.headers.get('retry-after') };
    });
    assert.equal(refusal.status, 503);
    assert.equal(refusal.body.error?.code, 'SHUTTING_DOWN');
    assert.match(refusal.body.error!.message, /retry/i);
    assert.equal(refusal.retryAfter, '1');
    retried.SHUTTING_DOWN = (retried.SHUTTING_DOWN ?? 0) + 1;
    // The refused upload is retried as the answer says, and lands on another process.
    const late = await uploadWithRetry(`drain-late-retried`, images[1]!);
    assert.ok(late, 'the refused upload landed elsewhere');

    assert.equal(victim.child.exitCode, null, 'it waits for the upload in hand');
    finish!();
    const slowResponse = await slow;
    const slowBodyJson = (await slowResponse.json()) as { id: string };
    assert.equal(slowResponse.status, 202, JSON.stringify(slowBodyJson));
    accepted.add(slowBodyJson.id);
    assert.equal(await exited, 0, 'then it exits cleanly');

    const acceptedAtExit = accepted.size;
    await until('uploads go on on the other processes', async () => accepted.size >= acceptedAtExit + 20);
    stopping = true;
    await lanes;
    probing = false;
    await prober;

    assert.deepEqual(failures, [], 'no upload failed: each was accepted, or refused retryably and retried');
    t.diagnostic(
      `${sent} uploads sent, ${accepted.size} accepted, retried answers: ${JSON.stringify(retried)}`,
    );
    assert.ok(sent >= 50, `${sent} uploads sent`);
    await until('every accepted image processed', async () => {
      const rows = await query<{ n: string }>(
        `select count(*) as n from images where customer_id = '${customer.id}' and status = 'processed'`,
      );
      return Number(rows[0]!.n) === accepted.size;
    });
    const [row] = await query<{ images: string; facts: string; twice: string }>(
      `select (select count(*) from images where customer_id = '${customer.id}') as images,
              (select count(*) from analytics.facts where customer_id = '${customer.id}') as facts,
              (select count(*) from (select image_id from analytics.facts where customer_id = '${customer.id}'
                                     group by image_id having count(*) > 1) t) as twice`,
    );
    assert.deepEqual(
      { images: Number(row!.images), facts: Number(row!.facts), twice: Number(row!.twice) },
      { images: accepted.size, facts: accepted.size, twice: 0 },
      `every accepted upload (${accepted.size}; retried answers: ${JSON.stringify(retried)}) landed once and was processed once`,
    );
    await stopChild(worker.child);
    for (const a of apis.slice(1)) await stopChild(a.child);
  });
});
