import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../../src/config/config.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { gif, jpeg, png, webp } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, settled, TestClock, upload } from './harness.ts';

const flaky = fileURLToPath(new URL('../fixtures/processors/flaky.ts', import.meta.url));
let dataDir: string;
let server: RunningServer;
let url: string;
const clock = new TestClock();
const env = () => ({
  IMAGELAKE_DATA_DIR: dataDir,
  IMAGELAKE_PORT: '0',
  IMAGELAKE_ADMIN_TOKEN: ADMIN,
  IMAGELAKE_POLL_INTERVAL: '200ms',
  IMAGELAKE_PROCESSORS: flaky,
  IMAGELAKE_SQL_TIMEOUT: '1s',
  IMAGELAKE_SQL_MAX_ROWS: '5',
  FLAKY_DIR: dataDir,
});

async function start(): Promise<void> {
  process.env.FLAKY_DIR = dataDir;
  server = await startServer(loadConfig(env()), {
    roles: ['api', 'worker'],
    clock,
    log: pino({ level: 'silent' }),
  });
  url = server.url!;
}

/** The rollups recomputed from the facts: what the incremental rollups must equal. */
async function factsGrouped(db: RunningServer['db']) {
  return (
    await sql<Record<string, string>>`
      select day::text, customer_id, format, source, outcome, coalesce(error_code, '') as error_code, count(*)::int as images, sum(bytes)::bigint::text as bytes
      from analytics.facts group by 1, 2, 3, 4, 5, 6 order by 1, 2, 3, 4, 5, 6`.execute(db)
  ).rows;
}
async function rollupRows(db: RunningServer['db'], table: 'rollup_daily' | 'rollup_hourly') {
  const bucket = table === 'rollup_daily' ? sql`day` : sql`(hour at time zone 'UTC')::date`;
  return (
    await sql<Record<string, string>>`
      select ${bucket}::text as day, customer_id, format, source, outcome, error_code, sum(images)::int as images, sum(bytes)::bigint::text as bytes
      from ${sql.table(`analytics.${table}`)} group by 1, 2, 3, 4, 5, 6 order by 1, 2, 3, 4, 5, 6`.execute(db)
  ).rows;
}

const customers: Array<{ id: string; apiKey: string; name: string }> = [];
let analystKey: string;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'imagelake-analytics-'));
  await start();
  for (const name of ['Alpha', 'Beta', 'Gamma'])
    customers.push({ ...(await createCustomer(url, name)), name });
  analystKey = (await api(url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'bi' })).body.apiKey;
  // Two days of traffic: yesterday and today, three customers, four formats, and failures.
  clock.advance(-86_400_000);
  for (const [i, c] of customers.entries()) {
    for (let k = 0; k <= i; k++)
      await settled(url, c.apiKey, (await upload(url, c.apiKey, await jpeg({ seed: 100 * i + k }))).body.id);
  }
  clock.advance(86_400_000);
  for (const [i, c] of customers.entries()) {
    const bytes = [await png(), await webp(), await gif(2), await jpeg({ seed: 50 + i })];
    for (const b of bytes.slice(0, i + 2))
      await settled(url, c.apiKey, (await upload(url, c.apiKey, b)).body.id);
    await settled(
      url,
      c.apiKey,
      (
        await upload(
          url,
          c.apiKey,
          Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(900, 3)]),
        )
      ).body.id,
    );
  }
});
after(async () => {
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('analytics', () => {
  it('rollups equal the facts they summarize, after retries and a restart', async () => {
    const facts = await factsGrouped(server.db);
    assert.equal(
      facts.reduce((n, r) => n + Number(r.images), 0),
      1 + 2 + 3 + (2 + 1) + (3 + 1) + (4 + 1),
    );
    assert.deepEqual(
      await rollupRows(server.db, 'rollup_daily'),
      facts,
      'every image was attempted twice (flaky processor), counted once',
    );
    assert.deepEqual(await rollupRows(server.db, 'rollup_hourly'), facts);

    await server.stop();
    await start();
    const c = customers[0]!;
    await settled(url, c.apiKey, (await upload(url, c.apiKey, await jpeg({ seed: 999 }))).body.id);
    const after = await factsGrouped(server.db);
    assert.deepEqual(await rollupRows(server.db, 'rollup_daily'), after);
    assert.deepEqual(await rollupRows(server.db, 'rollup_hourly'), after);
    const dims = (
      await sql<{
        d: Record<string, unknown>;
      }>`select dimensions as d from analytics.facts where outcome = 'processed' limit 1`.execute(server.db)
    ).rows[0]!.d;
    assert.ok(
      ['zero', 'other'].includes(String(dims['flaky.label'])),
      "processors' outputs become dimensions",
    );
  });

  it('answers the dashboard from the rollups, with filters', async () => {
    const today = clock.now().toISOString().slice(0, 10);
    const yesterday = new Date(clock.now().getTime() - 86_400_000).toISOString().slice(0, 10);
    const all = (await api(url, analystKey, 'GET', `/v1/analytics/summary?from=${yesterday}&to=${today}`))
      .body;
    const facts = await factsGrouped(server.db);
    assert.equal(
      all.totals.images,
      facts.reduce((n, r) => n + Number(r.images), 0),
    );
    assert.equal(all.totals.failed, 3);
    assert.equal(all.totals.customers, 3);
    assert.ok(all.totals.p50Ms > 0 && all.totals.p95Ms >= all.totals.p50Ms);
    assert.deepEqual(all.failures, [{ errorCode: 'CORRUPT_IMAGE', images: 3 }]);
    const beta = customers[1]!;
    const one = (
      await api(
        url,
        analystKey,
        'GET',
        `/v1/analytics/summary?from=${yesterday}&to=${today}&customerId=${beta.id}&format=jpeg`,
      )
    ).body;
    assert.equal(
      one.totals.images,
      2 + 1,
      "Beta's JPEGs: two yesterday, and today's corrupt one (its bytes say JPEG)",
    );
    assert.deepEqual(
      one.topCustomers.map((c: { name: string }) => c.name),
      ['Beta'],
    );
    const hourly = (await api(url, analystKey, 'GET', `/v1/analytics/summary?from=${today}&to=${today}`))
      .body;
    assert.equal(hourly.granularity, 'hour');
    assert.equal(
      (await api(url, customers[0]!.apiKey, 'GET', '/v1/analytics/summary')).status,
      403,
      'customers see no analytics',
    );
  });

  it('reads the same default range on /v1/stats and every analytics route: the last 30 days', async () => {
    const today = clock.now().toISOString().slice(0, 10);
    const first = new Date(Date.parse(`${today}T00:00:00Z`) - 29 * 86_400_000).toISOString().slice(0, 10);
    for (const path of [
      '/v1/stats',
      '/v1/analytics/summary',
      '/v1/analytics/dimensions',
      '/v1/analytics/processors',
    ]) {
      const { status, body } = await api(url, analystKey, 'GET', path);
      assert.equal(status, 200, path);
      assert.deepEqual({ from: body.from, to: body.to }, { from: first, to: today }, path);
    }
    const dimension = await api(url, analystKey, 'GET', '/v1/analytics/dimensions/flaky.label');
    assert.deepEqual({ from: dimension.body.from, to: dimension.body.to }, { from: first, to: today });
  });

  it('runs analyst SQL read-only on the analytics schema, and refuses the rest with codes', async () => {
    const ask = async (query: string, key = analystKey) => api(url, key, 'POST', '/v1/sql', { query });
    const grouped = await ask(
      'select c.name, count(*)::int as images from facts f join customers c on c.id = f.customer_id group by 1 order by 1',
    );
    assert.equal(grouped.status, 200, JSON.stringify(grouped.body));
    assert.deepEqual(
      grouped.body.rows.map((r: { name: string }) => r.name),
      ['Alpha', 'Beta', 'Gamma'],
    );
    const capped = await ask('select * from facts');
    assert.equal(capped.body.rowCount, 5);
    assert.equal(capped.body.truncated, true);
    const csv = await fetch(`${url}/v1/sql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${analystKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        query: 'select format, count(*) from facts group by 1 order by 1',
        format: 'csv',
      }),
    });
    assert.match(await csv.text(), /^format,count\n/);
    const refusals: Array<[string, number, string]> = [
      ['delete from facts', 400, 'SQL_WRITE_REFUSED'],
      ['insert into rollup_daily (day) values (now())', 400, 'SQL_WRITE_REFUSED'],
      ['with gone as (delete from facts returning *) select count(*) from gone', 400, 'SQL_WRITE_REFUSED'],
      ['drop table facts', 400, 'SQL_WRITE_REFUSED'],
      ['create table mine (i int)', 400, 'SQL_WRITE_REFUSED'],
      ['select * from public.images', 403, 'SQL_FORBIDDEN'],
      ['select * from public.api_keys', 403, 'SQL_FORBIDDEN'],
      ['select pg_sleep(5)', 408, 'SQL_TIMEOUT'],
      ['select 1; delete from facts', 400, 'SQL_INVALID'],
      ['selec 1', 400, 'SQL_INVALID'],
    ];
    for (const [query, status, code] of refusals) {
      const r = await ask(query);
      assert.equal(r.status, status, `${query}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, query);
    }
    assert.equal((await ask('select 1', customers[0]!.apiKey)).status, 403);
    assert.ok(
      Number(
        (await sql<{ n: string }>`select count(*) as n from analytics.facts`.execute(server.db)).rows[0]!.n,
      ) > 5,
      'nothing was deleted',
    );
  });

  it('gives BI tools a read-only connection that sees only the analytics schema', async () => {
    const { body } = await api(url, ADMIN, 'GET', '/v1/analytics/connection');
    const client = new pg.Client({ connectionString: body.url });
    await client.connect();
    try {
      const { rows } = await client.query('select count(*)::int as n from analytics.rollup_daily');
      assert.ok(rows[0].n > 0);
      await assert.rejects(client.query('select * from public.images'), /permission denied/);
      await assert.rejects(client.query('update analytics.facts set bytes = 0'), /read-only transaction/);
    } finally {
      await client.end();
    }
  });

  it('exports facts and rollups to Parquet that DuckDB reads back with the same totals; purged facts leave it', async () => {
    const result = (await api(url, ADMIN, 'POST', '/v1/analytics/export')).body;
    assert.equal(result.facts.length, 2, 'two days of facts');
    const lakeDir = join(dataDir, 'lake');
    const duck = await DuckDBInstance.create(':memory:');
    const db = await duck.connect();
    const read = async (query: string) => (await db.runAndReadAll(query)).getRowObjects();
    try {
      const fromParquet = await read(
        `select count(*)::int as images, sum(bytes)::bigint::varchar as bytes, count(distinct dt)::int as days from read_parquet('${lakeDir}/analytics/facts/*/*.parquet', hive_partitioning = true)`,
      );
      const fromDb = (
        await sql<{
          images: number;
          bytes: string;
        }>`select count(*)::int as images, sum(bytes)::bigint::text as bytes from analytics.facts`.execute(
          server.db,
        )
      ).rows[0]!;
      assert.deepEqual(fromParquet, [{ images: fromDb.images, bytes: fromDb.bytes, days: 2 }]);
      const rollups = await read(
        `select sum(images)::int as images from read_parquet('${lakeDir}/analytics/rollup_daily/*/*.parquet', hive_partitioning = true)`,
      );
      assert.deepEqual(rollups, [{ images: fromDb.images }]);
      // Every column of each exported table reaches its Parquet files (updated_at was once left out),
      // but a rollup's slot: the export sums a key's slots into one row.
      for (const [table, files] of [
        ['facts', 'facts'],
        ['rollup_daily', 'rollup_daily'],
        ['rollup_hourly', 'rollup_hourly'],
        ['rollup_processors_daily', 'rollup_processors_daily'],
      ]) {
        const inParquet = (
          await read(
            `describe select * from read_parquet('${lakeDir}/analytics/${files}/*/*.parquet', hive_partitioning = false)`,
          )
        ).map((c) => c.column_name);
        const inDb = (
          await sql<{ column: string }>`select column_name as column from information_schema.columns
            where table_schema = 'analytics' and table_name = ${table} and column_name <> 'slot'
            order by ordinal_position`.execute(server.db)
        ).rows.map((c) => c.column);
        assert.deepEqual(inParquet, inDb, `${table}: the Parquet columns are the table's`);
      }
      // How each processor fared, per image and summed, goes to the warehouse too.
      const runs = await read(
        `select count(*)::int as images from read_parquet('${lakeDir}/analytics/facts/*/*.parquet')
         where json_extract_string(processor_runs, '$.flaky.version') is not null`,
      );
      const processorRollup = await read(
        `select sum(runs)::int as runs from read_parquet('${lakeDir}/analytics/rollup_processors_daily/*/*.parquet') where processor = 'flaky'`,
      );
      const runsInDb = (
        await sql<{ images: number; runs: number }>`
          select (select count(*)::int from analytics.facts where processor_runs ? 'flaky') as images,
                 (select sum(runs)::int from analytics.rollup_processors_daily where processor = 'flaky') as runs`.execute(
          server.db,
        )
      ).rows[0]!;
      assert.ok(runsInDb.images > 0, 'the flaky processor ran');
      assert.deepEqual(runs, [{ images: runsInDb.images }]);
      assert.deepEqual(processorRollup, [{ runs: runsInDb.runs }]);

      // Gamma leaves: its facts go with its images, the day files holding them are rewritten without them.
      const gamma = customers[2]!;
      const receipt = (await api(url, ADMIN, 'DELETE', `/v1/customers/${gamma.id}/images`)).body;
      assert.equal(receipt.deleted.fact.count, 3 + 4 + 1, 'three yesterday, four today and a corrupt one');
      assert.equal(receipt.deleted.parquet.count, 2);
      await api(url, ADMIN, 'POST', '/v1/analytics/export');
      const left = await read(
        `select count(*)::int as n from read_parquet('${lakeDir}/analytics/facts/*/*.parquet') where customer_id = '${gamma.id}'`,
      );
      assert.deepEqual(left, [{ n: 0 }]);
      const keptRollups = await read(
        `select sum(images)::int as images from read_parquet('${lakeDir}/analytics/rollup_daily/*/*.parquet')`,
      );
      assert.deepEqual(keptRollups, [{ images: fromDb.images }], 'rollups hold no image data and stay');
    } finally {
      db.closeSync();
      duck.closeSync();
    }
  });
});
