// Analyst SQL's guards: what the result-size guard costs a query, that it reads no further than the
// rows it sends, and how much memory the API holds while analysts ask for huge results.
//
//   node bench/analyst-sql.ts [--runs 5]
//
// Starts the API on the embedded PostgreSQL in a temporary data dir. Times each query through
// POST /v1/sql (p50), and the same query on the analyst connection with and without the guard
// (DECLARE + FETCH of 10,001 rows, as the endpoint does). Then runs the 50 MB-per-row and
// 500 kB × 100,000-row queries from four keys at once, ten times each, and prints the API
// process's peak RSS.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { guarded } from '../src/analytics/sql.ts';
import { BENCH_ADMIN, startApiServer } from './api-server.ts';

const { values } = parseArgs({ options: { runs: { type: 'string' } } });
const RUNS = Number(values.runs ?? 5);
const ADMIN = BENCH_ADMIN;
const MAX_BYTES = 32 * 1024 * 1024;

const { url, stop } = await startApiServer('sql', { IMAGELAKE_SQL_TIMEOUT: '60s' });
const call = async (key: string, method: string, path: string, body?: unknown) => {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
};
const keys: string[] = [];
for (let i = 0; i < 4; i++)
  keys.push(JSON.parse((await call(ADMIN, 'POST', '/v1/analyst-keys', { name: `bench ${i}` })).text).apiKey);
const connection = JSON.parse((await call(ADMIN, 'GET', '/v1/analytics/connection')).text).url;
const client = new pg.Client({ connectionString: connection });
await client.connect();
try {
  const p50 = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  async function time(work: () => Promise<unknown>): Promise<number> {
    const samples: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      await work();
      samples.push(performance.now() - started);
    }
    return p50(samples);
  }
  async function direct(text: string): Promise<void> {
    await client.query('begin read only');
    try {
      await client.query(`declare c no scroll cursor for ${text}`);
      await client.query('fetch forward 10001 from c');
    } finally {
      await client.query('rollback');
    }
  }

  const QUERIES = {
    '10,000 rows, 5 columns':
      'select g, g * 2 as double, md5(g::text) as hash, now() as at, g::numeric / 3 as third from generate_series(1, 10000) g',
    '10,001 of 400,000,000 rows (lazy join)':
      'select a.g from generate_series(1, 20000) a(g), generate_series(1, 20000) b(g)',
    'one aggregate row': 'select count(*) as n, sum(g) as total from generate_series(1, 1000000) g',
  };
  console.log('query'.padEnd(42), 'API p50 ms', ' raw ms', ' guarded ms');
  for (const [name, text] of Object.entries(QUERIES)) {
    const api = await time(async () => {
      const r = await call(keys[0]!, 'POST', '/v1/sql', { query: text });
      if (r.status !== 200) throw new Error(`${name}: ${r.status} ${r.text.slice(0, 200)}`);
    });
    const raw = await time(() => direct(text));
    const guard = await time(() => direct(guarded(text, MAX_BYTES)));
    console.log(
      name.padEnd(42),
      api.toFixed(0).padStart(10),
      raw.toFixed(0).padStart(7),
      guard.toFixed(0).padStart(11),
    );
  }

  const HUGE = {
    '500 kB x 100,000 rows': "select repeat('x', 500000) from generate_series(1, 100000)",
    'one 50 MB row': "select repeat('x', 50000000)",
  };
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  for (const [name, text] of Object.entries(HUGE)) {
    const refused = await time(async () => {
      const r = await call(keys[0]!, 'POST', '/v1/sql', { query: text, format: 'csv' });
      if (r.status !== 400) throw new Error(`${name}: ${r.status}`);
    });
    console.log(`${name}: refused (SQL_RESULT_TOO_LARGE) in ${refused.toFixed(0)} ms p50`);
  }
  const started = performance.now();
  await Promise.all(
    keys.map(async (key) => {
      for (let i = 0; i < 10; i++)
        for (const text of Object.values(HUGE)) {
          const r = await call(key, 'POST', '/v1/sql', { query: text, format: 'csv' });
          if (r.status !== 400) throw new Error(`${r.status} ${r.text.slice(0, 200)}`);
        }
    }),
  );
  clearInterval(sampler);
  console.log(
    `4 keys x 10 x both huge queries: ${((performance.now() - started) / 1000).toFixed(1)} s; API process RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, ${(peak / 2 ** 20).toFixed(0)} MiB at peak`,
  );
} finally {
  await client.end();
  await stop();
}
