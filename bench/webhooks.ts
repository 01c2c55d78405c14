// Webhook deliveries per second to a local receiver, against a bare node:http client posting the
// same bodies to the same receiver, in the same run.
//
//   node bench/webhooks.ts [--deliveries 20000] [--endpoints 1] [--runs 3] [--rounds 5] [--waiting 0]
//
// `--waiting N` first writes N deliveries to another endpoint, due in two hours: a receiver that is
// down, its retries waiting on the schedule. A claim must not cost more for them.
//
// The receiver is a node:http server in a child process that answers 204 at once. The platform
// side is the real thing: deliveries written to PostgreSQL (the embedded one, in a temporary data
// dir) as an outcome writes them, then one dispatcher (the `webhooks` role) claiming, signing,
// sending and recording each. The baseline posts the same bodies with a keep-alive agent and the
// same number of requests in flight (the per-endpoint limit times the endpoints, within the
// dispatcher's overall limit), and signs nothing and records nothing. For scale each round also
// posts them with undici's dispatch alone, the client the dispatcher sends with (not in the ratio),
// and delivers them with the floor (floorRun): a bare dispatcher that reads, signs, sends and marks
// each delivered in PostgreSQL, in the fewest statements. The floor against the baseline is the most
// any dispatcher that keeps a delivery until it is answered could reach on this machine.
// A run takes turns, `rounds` times: a share of its deliveries posted bare, then as many delivered
// by the platform; a busy machine then slows both sides alike, rather than whichever ran while the
// load came. A whole run of each goes first, uncounted, to warm them up. Each run prints both rates and
// their ratio, the CPU per delivery of each process, and how busy each side's event loop was (the
// dispatcher's thread is what sets its rate on two cores); the last lines give the ratio's spread.
import { spawn } from 'node:child_process';
import { createHmac, createSecretKey, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EventLoopUtilization, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import pino from 'pino';
import { Agent } from 'undici';
import { createCustomer } from '../src/catalog/customers.ts';
import { addDeliveries, countPending } from '../src/catalog/webhook-deliveries.ts';
import { insertEndpoint } from '../src/catalog/webhooks.ts';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config/config.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { startServer } from '../src/server.ts';
import { WebhookDispatcher } from '../src/webhooks/dispatcher.ts';
import { eventBody } from '../src/webhooks/events.ts';
import { newSecret } from '../src/webhooks/signing.ts';
import { cpuBetween, cpuSecondsOf, processTree } from './process-tree.ts';

const { values } = parseArgs({
  options: {
    deliveries: { type: 'string' },
    endpoints: { type: 'string' },
    runs: { type: 'string' },
    rounds: { type: 'string' },
    waiting: { type: 'string' },
  },
});
const DELIVERIES = Number(values.deliveries ?? 20000);
const ENDPOINTS = Number(values.endpoints ?? 1);
const RUNS = Number(values.runs ?? 3);
const ROUNDS = Number(values.rounds ?? 5);
const WAITING = Number(values.waiting ?? 0);

// The receiver, in a process of its own so that it does not share this one's event loop.
const receiver = spawn(
  process.execPath,
  [
    '-e',
    `const s = require('node:http').createServer((q, r) => { q.resume(); q.on('end', () => r.writeHead(204).end()); });
     s.keepAliveTimeout = 60000;
     s.listen(0, '127.0.0.1', () => console.log(s.address().port));`,
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
// However this process ends, the receiver goes with it.
process.on('exit', () => receiver.kill());
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const port = await new Promise<number>((resolve) =>
  receiver.stdout!.once('data', (d) => resolve(Number(String(d)))),
);

const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-webhooks-'));
const config = loadConfig({
  IMAGELAKE_DATA_DIR: dataDir,
  IMAGELAKE_PORT: '0',
  IMAGELAKE_POSTGRES_PORT: '0',
  IMAGELAKE_ADMIN_TOKEN: 'il_admin_bench-token-0123456789abcdefghijklmnopqrstuvwxyz',
  IMAGELAKE_WEBHOOK_ALLOW_HTTP: 'true',
  IMAGELAKE_WEBHOOK_ALLOW_PRIVATE: 'true',
});
// Only the catalog: the dispatcher below is the one under test.
const server = await startServer(config, { roles: [], log: pino({ level: 'silent' }) });
const { db } = server;
await sql`
  create table bench_webhook_floor (
    id bigserial primary key, payload text not null, status text not null default 'pending',
    attempts int not null default 0) with (fillfactor = 50)`.execute(db);
const inFlight = Math.min(config.webhooks.concurrency, config.webhooks.perEndpoint * ENDPOINTS);

const customerId = (await createCustomer(db, 'Bench')).customer.id;
const endpoints: string[] = [];
for (let e = 0; e < ENDPOINTS; e++)
  endpoints.push(
    (
      await insertEndpoint(db, {
        id: randomUUID(),
        customerId,
        url: `http://127.0.0.1:${port}/hook/${e}`,
        description: null,
        events: ['image.processed'],
        secret: newSecret(),
      })
    ).id,
  );

if (WAITING > 0) {
  const down = await insertEndpoint(db, {
    id: randomUUID(),
    customerId,
    url: `http://127.0.0.1:${port}/down`,
    description: null,
    events: ['image.processed'],
    secret: newSecret(),
  });
  const later = new Date(Date.now() + 2 * 3600_000);
  for (let i = 0; i < WAITING; i += 5000)
    await addDeliveries(
      db,
      Array.from({ length: Math.min(5000, WAITING - i) }, (_, k) => ({
        endpointId: down.id,
        customerId,
        imageId: null,
        eventType: 'image.processed',
        payload: body(i + k),
      })),
      later,
    );
  // As autovacuum would have by then: not counted in the runs' PostgreSQL CPU.
  await sql`vacuum analyze webhook_deliveries, webhook_due`.execute(db);
}

/** An image.processed body of the usual size: the image as the API shows it. */
function body(i: number): string {
  const id = randomUUID();
  return eventBody('image.processed', new Date(), {
    id,
    customerId,
    source: 'http',
    status: 'processed',
    format: 'jpeg',
    width: 4032,
    height: 3024,
    bytes: 2_481_123 + i,
    checksum: 'a'.repeat(64),
    phash: 'c3a1f0e2d4b59687',
    filename: `IMG_${i}.jpg`,
    receivedAt: new Date().toISOString(),
    processedAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 7 * 86_400_000).toISOString(),
    metadata: {
      orientation: 6,
      exif: { make: 'Apple', model: 'iPhone 15', hasGps: true, iso: 50, exposure: '1/120' },
      colorSpace: 'srgb',
      hasAlpha: false,
    },
    processors: {},
    labels: [],
    renditions: ['thumb', 'preview'].map((name) => ({
      name,
      format: 'webp',
      width: name === 'thumb' ? 192 : 1024,
      height: name === 'thumb' ? 256 : 1365,
      bytes: 12_345,
      url: `/v1/images/${id}/renditions/${name}`,
    })),
  });
}

/**
 * CPU seconds of this process, of the embedded PostgreSQL (this process's other children), and of
 * the receiver: on two cores the receiver shares one with PostgreSQL.
 */
function cpuNow(): {
  self: Map<number, number>;
  postgres: Map<number, number>;
  receiver: Map<number, number>;
  loop: EventLoopUtilization;
} {
  const all = cpuSecondsOf(processTree(process.pid, [receiver.pid!]));
  const self = new Map([[process.pid, all.get(process.pid) ?? 0]]);
  all.delete(process.pid);
  return {
    self,
    postgres: all,
    receiver: cpuSecondsOf([receiver.pid!]),
    loop: performance.eventLoopUtilization(),
  };
}

/** What one side spent on its deliveries: wall seconds and CPU seconds. */
interface Spent {
  count: number;
  seconds: number;
  /** CPU seconds of this process (the dispatcher, or the bare client). */
  self: number;
  /** CPU seconds of PostgreSQL. */
  postgres: number;
  /** CPU seconds of the receiver. */
  receiver: number;
  /**
   * Seconds this process's event loop was busy (not waiting for I/O), preempted time included: the
   * dispatcher's thread, or the bare client's.
   */
  busy: number;
}

function spent(count: number, seconds: number, before: ReturnType<typeof cpuNow>): Spent {
  const after = cpuNow();
  return {
    count,
    seconds,
    self: cpuBetween(before.self, after.self),
    postgres: cpuBetween(before.postgres, after.postgres),
    receiver: cpuBetween(before.receiver, after.receiver),
    busy: performance.eventLoopUtilization(before.loop).active / 1000,
  };
}

function add(a: Spent, b: Spent): Spent {
  return {
    count: a.count + b.count,
    seconds: a.seconds + b.seconds,
    self: a.self + b.self,
    postgres: a.postgres + b.postgres,
    receiver: a.receiver + b.receiver,
    busy: a.busy + b.busy,
  };
}

async function platformRun(bodies: string[]): Promise<Spent> {
  await addDeliveries(
    db,
    bodies.map((payload, i) => ({
      endpointId: endpoints[i % ENDPOINTS]!,
      customerId,
      imageId: null,
      eventType: 'image.processed',
      payload,
    })),
    new Date(),
  );
  const metrics = createMetrics();
  const dispatcher = new WebhookDispatcher({
    db,
    log: pino({ level: 'silent' }),
    metrics,
    clock: systemClock,
    config: config.webhooks,
  });
  // The run ends when the last delivery is recorded, seen as the dispatcher counts it (not by
  // polling the counter, which would add up to a poll's interval to every round).
  let delivered = 0;
  const { promise: allDelivered, resolve } = Promise.withResolvers<void>();
  const count = metrics.webhookAttempts.inc.bind(metrics.webhookAttempts);
  metrics.webhookAttempts.inc = ((labels: { outcome: string }) => {
    count(labels);
    if (labels.outcome === 'delivered' && ++delivered === bodies.length) resolve();
  }) as typeof metrics.webhookAttempts.inc;
  const cpu = cpuNow();
  const start = performance.now();
  dispatcher.start();
  await allDelivered;
  const seconds = (performance.now() - start) / 1000;
  const measured = spent(bodies.length, seconds, cpu);
  await dispatcher.stop();
  if ((await countPending(db)) !== WAITING) throw new Error('deliveries left pending');
  return measured;
}

/** Posts every body with `post`, `inFlight` at a time: what each bare client spent. */
async function postAll(
  bodies: string[],
  post: (payload: string, i: number) => Promise<void>,
): Promise<Spent> {
  let next = 0;
  const cpu = cpuNow();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < bodies.length) {
        const i = next++;
        await post(bodies[i]!, i);
      }
    }),
  );
  return spent(bodies.length, (performance.now() - start) / 1000, cpu);
}

/** The baseline: node:http with a keep-alive agent, as a receiver's own client would post. */
async function bareRun(bodies: string[]): Promise<Spent> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: inFlight });
  const measured = await postAll(
    bodies,
    (payload, i) =>
      new Promise<void>((resolve, reject) => {
        const request = http.request(
          {
            host: '127.0.0.1',
            port,
            path: `/hook/${i % ENDPOINTS}`,
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
          },
          (response) => {
            response.resume();
            response.on('end', () =>
              response.statusCode === 204 ? resolve() : reject(new Error('not 204')),
            );
          },
        );
        request.on('error', reject);
        request.end(payload);
      }),
  );
  agent.destroy();
  return measured;
}

/**
 * The floor: a bare durable dispatcher keeping only the promises every delivery must keep, in the
 * fewest statements. The bodies are rows of a table of its own (written before the clock, as the
 * platform's deliveries are); it reads them in order, a batch at a time (the next read when half of
 * a batch is sent), signs each (HMAC-SHA256 of id, timestamp and body, as the platform signs), sends
 * it with undici as the dispatcher does, and marks what was answered delivered, a batch per
 * statement, without waiting for the WAL flush (as the platform records). No leases, endpoints,
 * retry schedule, attempt log, metrics or spans: what a dispatcher that keeps a delivery until it
 * is answered could reach on this machine.
 */
async function floorRun(bodies: string[]): Promise<Spent> {
  await sql`truncate bench_webhook_floor`.execute(db);
  const first = Number(
    (
      await sql<{ id: string }>`
        insert into bench_webhook_floor (payload)
        select unnest(${bodies}::text[]) returning id`.execute(db)
    ).rows[0]!.id,
  );
  await sql`vacuum analyze bench_webhook_floor`.execute(db);
  const agent = new Agent({ connections: inFlight });
  const origin = `http://127.0.0.1:${port}`;
  const key = createSecretKey(randomBytes(24));
  const BATCH = config.webhooks.perEndpoint * 32;
  let after = first - 1;
  let held: Array<{ id: string; payload: string }> = [];
  let reading: Promise<void> | undefined;
  let answered: string[] = [];
  const records: Promise<unknown>[] = [];
  let done = 0;
  let taken = 0;
  const read = () =>
    (reading ??= sql<{ id: string; payload: string }>`
      select id, payload from bench_webhook_floor where id > ${after} order by id limit ${BATCH}`
      .execute(db)
      .then(({ rows }) => {
        if (rows.length) after = Number(rows.at(-1)!.id);
        taken += rows.length;
        held = held.concat(rows);
        reading = undefined;
      }));
  const record = () => {
    const ids = answered;
    answered = [];
    records.push(
      sql`
        with quick as (select set_config('synchronous_commit', 'off', true))
        update bench_webhook_floor set status = 'delivered', attempts = attempts + 1
          from quick where id = any(${ids}::bigint[])`.execute(db),
    );
  };
  const send = (row: { id: string; payload: string }) => {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const signature = createHmac('sha256', key)
      .update(`${row.id}.${timestamp}.${row.payload}`)
      .digest('base64');
    return dispatch(
      agent,
      origin,
      '/hook/0',
      {
        'content-type': 'application/json',
        'webhook-id': row.id,
        'webhook-timestamp': timestamp,
        'webhook-signature': `v1,${signature}`,
      },
      row.payload,
    );
  };
  const cpu = cpuNow();
  const start = performance.now();
  await read();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (;;) {
        if (held.length < BATCH / 2 && taken < bodies.length) void read();
        if (held.length === 0) {
          if (taken === bodies.length) return;
          await (reading ?? read());
          continue;
        }
        const row = held.shift()!;
        await send(row);
        answered.push(row.id);
        done++;
        if (answered.length >= 64 || done === bodies.length) record();
      }
    }),
  );
  await Promise.all(records);
  const measured = spent(bodies.length, (performance.now() - start) / 1000, cpu);
  await agent.close();
  const left = await sql<{
    n: string;
  }>`select count(*) as n from bench_webhook_floor where status <> 'delivered'`.execute(db);
  if (Number(left.rows[0]!.n) !== 0) throw new Error('the floor left deliveries unmarked');
  return measured;
}

/** One POST with undici's dispatch and a handler that only checks the status, as webhooks/send.ts sends. */
function dispatch(
  agent: Agent,
  origin: string,
  path: string,
  headers: Record<string, string>,
  body: string,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let status = 0;
    agent.dispatch(
      { origin, path, method: 'POST', headers, body },
      {
        onRequestStart: () => {},
        onResponseData: () => {},
        onResponseStart: (_c, statusCode) => {
          status = statusCode;
        },
        onResponseEnd: () => (status === 204 ? resolve() : reject(new Error('not 204'))),
        onResponseError: (_c, error) => reject(error),
      },
    );
  });
}

/**
 * For scale, not the aim: undici's dispatch with a handler that only checks the status, as the
 * dispatcher sends (webhooks/send.ts). What the dispatcher spends beyond it is its own work.
 */
async function undiciRun(bodies: string[]): Promise<Spent> {
  const agent = new Agent({ connections: inFlight });
  const origin = `http://127.0.0.1:${port}`;
  const measured = await postAll(bodies, (payload, i) =>
    dispatch(agent, origin, `/hook/${i % ENDPOINTS}`, { 'content-type': 'application/json' }, payload),
  );
  await agent.close();
  return measured;
}

console.log(
  `${DELIVERIES} deliveries of ${Buffer.byteLength(body(0))} bytes to ${ENDPOINTS} endpoint(s), ${inFlight} in flight, ${RUNS} runs of ${ROUNDS} rounds` +
    (WAITING ? `; ${WAITING} more waiting for a retry in two hours` : ''),
);
const none: Spent = { count: 0, seconds: 0, self: 0, postgres: 0, receiver: 0, busy: 0 };
const us = (seconds: number, count: number) => ((seconds / count) * 1e6).toFixed(0);
const pct = (s: Spent) => `${((100 * s.busy) / s.seconds).toFixed(0)}%`;
const ratios: number[] = [];
const floorRatios: number[] = [];
const platformToFloor: number[] = [];
// A whole run of each side first, not counted: a dispatcher runs for days, and the bare client's
// code is compiled by then too. With one round only, the bare client was still speeding up through
// the first counted run (a fifth slower than in the runs after it), which flattered both ratios there.
for (let round = 0; round < ROUNDS; round++) {
  const bodies = Array.from({ length: Math.ceil(DELIVERIES / ROUNDS) }, (_, i) => body(i));
  await bareRun(bodies);
  await platformRun(bodies);
  await floorRun(bodies);
}
for (let run = 1; run <= RUNS; run++) {
  let bare = none;
  let platform = none;
  let undici = none;
  let floor = none;
  for (let round = 0; round < ROUNDS; round++) {
    const share = Math.ceil(DELIVERIES / ROUNDS);
    const bodies = Array.from({ length: share }, (_, i) => body(round * share + i));
    bare = add(bare, await bareRun(bodies));
    platform = add(platform, await platformRun(bodies));
    undici = add(undici, await undiciRun(bodies));
    floor = add(floor, await floorRun(bodies));
  }
  const rate = (s: Spent) => s.count / s.seconds;
  ratios.push(rate(platform) / rate(bare));
  floorRatios.push(rate(floor) / rate(bare));
  platformToFloor.push(rate(platform) / rate(floor));
  console.log(
    `run ${run}: platform ${rate(platform).toFixed(0)}/s, bare node:http ${rate(bare).toFixed(0)}/s, ratio ${(rate(platform) / rate(bare)).toFixed(2)}; ` +
      `CPU per delivery: dispatcher ${us(platform.self, platform.count)} µs + PostgreSQL ${us(platform.postgres, platform.count)} µs, bare client ${us(bare.self, bare.count)} µs; ` +
      `receiver ${us(platform.receiver, platform.count)} and ${us(bare.receiver, bare.count)} µs; ` +
      `undici alone ${rate(undici).toFixed(0)}/s at ${us(undici.self, undici.count)} µs; ` +
      `floor ${rate(floor).toFixed(0)}/s at ${us(floor.self, floor.count)} µs + PostgreSQL ${us(floor.postgres, floor.count)} µs, ${(rate(floor) / rate(bare)).toFixed(2)} of bare node:http; ` +
      `event loop busy ${pct(platform)} (dispatcher), ${pct(bare)} (bare client) and ${pct(floor)} (floor)`,
  );
}
const spread = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return `median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}, min ${sorted[0]!.toFixed(2)}, max ${sorted.at(-1)!.toFixed(2)}`;
};
const AIM = 0.8;
/** How many runs came under the aim: a floor whose median is near it says more with this beside it. */
const under = (xs: number[]) => `under ${AIM} in ${xs.filter((x) => x < AIM).length} of ${xs.length}`;
console.log(`ratio: ${spread(ratios)} (aim ${AIM})`);
console.log(
  `floor / bare node:http: ${spread(floorRatios)}, ${under(floorRatios)} (the most a dispatcher that records each delivery could reach here); platform / floor: ${spread(platformToFloor)}`,
);

await server.stop();
receiver.kill();
await rm(dataDir, { recursive: true, force: true });
