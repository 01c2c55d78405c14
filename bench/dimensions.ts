// Processor-field dimensions read from the facts: how long the list and the breakdowns take on a
// large history, their plans, and whether an index on facts.dimensions would help.
//
//   node bench/dimensions.ts [--facts 500000] [--customers 200] [--days 60] [--runs 10] [--explain]
//
// Generates facts with seven dimensions in PostgreSQL (embedded, in a temporary data dir): a common
// string, a high-cardinality string, a boolean, two numbers, a whole number, and a rare number present
// on 2% of images. Times each question p50/p95 with no index on dimensions, then with a GIN index
// (jsonb_ops, which serves the `?` key test; jsonb_path_ops does not).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { breakdown, listDimensions } from '../src/analytics/dimensions.ts';
import type { Database } from '../src/catalog/schema.ts';
import { generatedCatalog, seedCustomers, step } from './generated-catalog.ts';

const { values } = parseArgs({
  options: {
    facts: { type: 'string' },
    customers: { type: 'string' },
    days: { type: 'string' },
    runs: { type: 'string' },
    explain: { type: 'boolean' },
  },
});
const FACTS = Number(values.facts ?? 500_000);
const CUSTOMERS = Number(values.customers ?? 200);
const DAYS = Number(values.days ?? 60);
const RUNS = Number(values.runs ?? 10);

const { db, dataDir, close } = await generatedCatalog('dimensions');
// A second connection whose queries are captured, to EXPLAIN exactly what the module runs.
const port = (await sql<{ port: number }>`select inet_server_port() as port`.execute(db)).rows[0]!.port;
const password = await findPassword(dataDir);
const pool = new pg.Pool({
  connectionString: `postgres://imagelake:${encodeURIComponent(password)}@127.0.0.1:${port}/imagelake`,
});
const captured: CompiledQuery[] = [];
const logged = new Kysely<Database>({
  dialect: new PostgresDialect({ pool }),
  log: (event) => {
    if (event.level === 'query') captured.push(event.query);
  },
});

try {
  await seedCustomers(db, CUSTOMERS);
  await step(`${FACTS.toLocaleString()} facts over ${DAYS} days`, async () => {
    const batch = 250_000;
    for (let start = 0; start < FACTS; start += batch) {
      const count = Math.min(batch, FACTS - start);
      await sql`
        insert into analytics.facts (image_id, customer_id, source, format, outcome, error_code, bytes, width, height, megapixels,
          received_at, processed_at, day, queue_ms, processing_ms, processors, dimensions)
        select gen_random_uuid(), ids.id,
          case when r1 < 0.8 then 'http' else 'kafka' end,
          (array['jpeg','jpeg','jpeg','png','png','webp'])[1 + floor(r2 * 6)::int],
          case when failed then 'failed' else 'processed' end,
          case when failed then 'CORRUPT_IMAGE' end,
          (50000 + r2 * 8000000)::bigint, 4000, 3000, 12,
          t, t + interval '1 second', t::date, 10, 200,
          '{"quality": "1.0.0"}',
          case when failed then '{}'::jsonb else
            jsonb_build_object(
              'quality.exposure', (array['normal','normal','normal','dark','bright','overexposed','underexposed'])[1 + floor(r1 * 7)::int],
              'quality.sharpness', round((r2 * 2000)::numeric, 1),
              'quality.ok', r3 < 0.9,
              'brightness.mean', round(r4::numeric, 3),
              'faces.count', floor(power(r3, 4) * 7)::int,
              'tags.primary', 'tag-' || floor(power(r4, 3) * 3000)::int
            ) || case when r5 < 0.02 then jsonb_build_object('nsfw.score', round(r5::numeric * 50, 3)) else '{}'::jsonb end
          end
        from (
          select random() r1, random() r2, random() r3, random() r4, random() r5, random() < 0.02 as failed,
            now() - (random() * ${DAYS}) * interval '1 day' as t,
            1 + floor(power(random(), 3) * ${CUSTOMERS})::int as c
          from generate_series(1, ${count})
        ) g join ids on ids.n = g.c`.execute(db);
    }
  });
  await step('analyze', () => sql`analyze analytics.facts`.execute(db));
  const size = (
    await sql<{ n: string; size: string }>`
      select count(*) as n, pg_size_pretty(pg_total_relation_size('analytics.facts')) as size from analytics.facts`.execute(
      db,
    )
  ).rows[0]!;
  console.log(`facts ${Number(size.n).toLocaleString()}, ${size.size} with indexes`);

  const today = new Date().toISOString().slice(0, 10);
  const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10);
  const big = (
    await sql<{ id: string }>`
      select customer_id as id from analytics.facts group by 1 order by count(*) desc limit 1`.execute(db)
  ).rows[0]!.id;
  const week = { from: daysAgo(6), to: today };
  const month = { from: daysAgo(29), to: today };
  const all = { from: daysAgo(DAYS), to: today };
  const scenarios: Array<[string, (k: Kysely<Database>) => Promise<unknown>]> = [
    ['list, 7 days', (k) => listDimensions(k, week)],
    ['list, 30 days', (k) => listDimensions(k, month)],
    [`list, ${DAYS} days`, (k) => listDimensions(k, all)],
    ['list, 30 days, largest customer', (k) => listDimensions(k, { ...month, customerId: big })],
    ['quality.exposure (string), 30 days', (k) => breakdown(k, { ...month, dimension: 'quality.exposure' })],
    ['tags.primary (3000 values), 30 days', (k) => breakdown(k, { ...month, dimension: 'tags.primary' })],
    ['quality.ok (boolean), 30 days', (k) => breakdown(k, { ...month, dimension: 'quality.ok' })],
    [
      'quality.sharpness (number), 30 days',
      (k) => breakdown(k, { ...month, dimension: 'quality.sharpness' }),
    ],
    ['faces.count (whole), 30 days', (k) => breakdown(k, { ...month, dimension: 'faces.count' })],
    ['nsfw.score (2% of images), 30 days', (k) => breakdown(k, { ...month, dimension: 'nsfw.score' })],
    [`nsfw.score (2% of images), ${DAYS} days`, (k) => breakdown(k, { ...all, dimension: 'nsfw.score' })],
    [
      'quality.exposure, 30 days, largest customer, png',
      (k) => breakdown(k, { ...month, dimension: 'quality.exposure', customerId: big, format: 'png' }),
    ],
    ['absent.field, 30 days', (k) => breakdown(k, { ...month, dimension: 'absent.field' })],
  ];

  const timeIt = async (work: () => Promise<unknown>) => {
    const times: number[] = [];
    await work(); // warm the cache once, as a dashboard in use would have
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      await work();
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    return { p50: times[Math.floor(RUNS * 0.5)]!, p95: times[Math.min(RUNS - 1, Math.floor(RUNS * 0.95))]! };
  };
  const run = async (label: string) => {
    const table: Record<string, Record<string, number>> = {};
    for (const [name, work] of scenarios) {
      const t = await timeIt(() => work(db));
      table[name] = { 'p50 ms': +t.p50.toFixed(1), 'p95 ms': +t.p95.toFixed(1) };
    }
    console.log(`\n${label}`);
    console.table(table);
    if (values.explain) {
      for (const [name, work] of scenarios) {
        captured.length = 0;
        await work(logged);
        for (const q of captured) {
          const plan = await pool.query(`explain (analyze, buffers, costs off) ${q.sql}`, [...q.parameters]);
          console.log(`\n--- ${name} (${label})\n${plan.rows.map((r) => r['QUERY PLAN']).join('\n')}`);
        }
      }
    }
  };

  await run('no index on dimensions (facts_day, facts_customer_day only)');
  await step('\ncreate index facts_dimensions on analytics.facts using gin (dimensions)', async () => {
    await sql`set maintenance_work_mem = '512MB'`.execute(db);
    await sql`create index facts_dimensions on analytics.facts using gin (dimensions)`.execute(db);
    await sql`analyze analytics.facts`.execute(db);
  });
  const gin = (
    await sql<{
      size: string;
    }>`select pg_size_pretty(pg_relation_size('analytics.facts_dimensions')) as size`.execute(db)
  ).rows[0]!;
  console.log(`GIN index: ${gin.size}`);
  await run('with a GIN (jsonb_ops) index on dimensions');
} finally {
  await logged.destroy();
  await close();
}

/** The embedded PostgreSQL's password, kept in a file named "password" under the data dir. */
async function findPassword(dir: string): Promise<string> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name === 'password')
      return (await readFile(join(entry.parentPath, entry.name), 'utf8')).trim();
  }
  throw new Error(`no password file under ${dir}`);
}
