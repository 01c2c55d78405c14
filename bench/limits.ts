// What per-customer limits cost an upload: the statements each HTTP upload adds (the rate limit's
// bucket, the queue share's count, the month's quota row), timed on their own, and POST /v1/images
// timed end to end for a customer with every limit in force against one with none, in one run.
//
//   node bench/limits.ts [--uploads 400] [--waiting 2500]
//
// Starts the API (no worker: uploads stay waiting) on the embedded PostgreSQL in a temporary data
// dir; the measured customer has --waiting images waiting (its whole default share), and 100 other
// customers have 175 each, so the queue share's count reads one customer's among many.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createCustomer } from '../src/catalog/customers.ts';
import { countWaiting, insertImage } from '../src/catalog/images.ts';
import { countLanding } from '../src/catalog/quota-usage.ts';
import { takeTokens } from '../src/catalog/rate-limits.ts';
import { jpeg } from '../test/fixtures/images.ts';
import { BENCH_ADMIN, startApiServer } from './api-server.ts';

const { values } = parseArgs({ options: { uploads: { type: 'string' }, waiting: { type: 'string' } } });
const UPLOADS = Number(values.uploads ?? 400);
const WAITING = Number(values.waiting ?? 2500);
const ADMIN = BENCH_ADMIN;

const { server, url, stop } = await startApiServer('limits', {
  IMAGELAKE_MAX_QUEUE_DEPTH: '1000000',
  IMAGELAKE_MAX_QUEUE_DEPTH_PER_CUSTOMER: '1000000',
});
const { db } = server;

async function waitingImages(customerId: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++)
    await insertImage(db, {
      id: randomUUID(),
      customer_id: customerId,
      source: 'http',
      status: 'received',
      idempotency_key: null,
      filename: null,
      checksum: '0'.repeat(64),
      bytes: 1000,
      format: 'jpeg',
      raw_key: `bench/${randomUUID()}`,
      received_at: new Date(),
    });
}

function quantiles(ms: number[]): string {
  const sorted = [...ms].sort((x, y) => x - y);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return `p50 ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms`;
}

async function timed(n: number, run: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await run(i);
    out.push(performance.now() - start);
  }
  return out;
}

const measured = (await createCustomer(db, 'Measured')).customer.id;
await waitingImages(measured, WAITING);
for (let c = 0; c < 100; c++) await waitingImages((await createCustomer(db, `Other ${c}`)).customer.id, 175);

const bucket = { rate: 1e9, burst: 1e9 };
console.log(`statements, ${UPLOADS} times each:`);
console.log(
  `  rate limit take (one bucket)       ${quantiles(await timed(UPLOADS, () => takeTokens(db, measured, 'uploads', bucket, 1, 1)))}`,
);
console.log(
  `  queue share count (${WAITING} waiting)  ${quantiles(await timed(UPLOADS, () => countWaiting(db, measured, WAITING)))}`,
);
console.log(
  `  quota row, in a transaction        ${quantiles(
    await timed(UPLOADS, () =>
      db.transaction().execute((trx) =>
        countLanding(trx, measured, new Date(), 1000, {
          images: Number.POSITIVE_INFINITY,
          bytes: Number.POSITIVE_INFINITY,
        }),
      ),
    ),
  )}`,
);

// End to end: the same uploads for a customer with no limit and one with every limit in force.
const call = async (key: string, method: string, path: string, body?: unknown) =>
  (
    await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  ).json() as Promise<{ id: string; apiKey: string }>;
const free = await call(ADMIN, 'POST', '/v1/customers', { name: 'No limits' });
const limited = await call(ADMIN, 'POST', '/v1/customers', { name: 'Every limit' });
await call(ADMIN, 'PATCH', `/v1/customers/${limited.id}`, {
  limits: {
    uploadsPerSecond: 1e6,
    bytesPerSecond: 1e12,
    monthlyImages: 1e9,
    monthlyBytes: 1e15,
    queueShare: 1e6,
  },
});
const photos = await Promise.all(
  Array.from({ length: 20 }, (_, i) => jpeg({ width: 64, height: 48, seed: i })),
);
const post = (key: string, i: number) =>
  fetch(`${url}/v1/images`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(photos[i % photos.length]!),
  }).then(async (r) => {
    await r.arrayBuffer();
    if (r.status !== 202) throw new Error(`upload answered ${r.status}`);
  });
// Alternate, so both see the same machine at the same moment.
const none: number[] = [];
const all: number[] = [];
for (let i = 0; i < UPLOADS; i++) {
  none.push(...(await timed(1, () => post(free.apiKey, i))));
  all.push(...(await timed(1, () => post(limited.apiKey, i))));
}
const median = (ms: number[]) => [...ms].sort((x, y) => x - y)[Math.floor(ms.length / 2)]!;
console.log(`POST /v1/images, ${UPLOADS} each (64x48 JPEG):`);
console.log(`  no limits        ${quantiles(none)}`);
console.log(`  every limit      ${quantiles(all)}`);
console.log(`  ratio of p50s    ${(median(all) / median(none)).toFixed(2)}`);

await stop();
