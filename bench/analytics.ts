// Dashboard query latency on a large history, from the rollups, against the same questions asked
// of the facts directly (the baseline), in one run.
//
//   npm run bench:analytics -- [--facts 10000000] [--customers 1000] [--days 400] [--runs 20] [--baseline-runs 3]
//
// Generates the facts in PostgreSQL (embedded, in a temporary data dir), builds the hourly and daily
// rollups from them, then times every query the dashboard makes, p50 and p95 over --runs runs.
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { sql } from 'kysely';
import { summary } from '../src/analytics/summary.ts';
import type { Db } from '../src/catalog/database.ts';
import { generatedCatalog, seedCustomers, step } from './generated-catalog.ts';

const { values } = parseArgs({
  options: {
    facts: { type: 'string' },
    customers: { type: 'string' },
    days: { type: 'string' },
    runs: { type: 'string' },
    'baseline-runs': { type: 'string' },
  },
});
const FACTS = Number(values.facts ?? 10_000_000);
const CUSTOMERS = Number(values.customers ?? 1000);
const DAYS = Number(values.days ?? 400);
const RUNS = Number(values.runs ?? 20);
// Each baseline query scans millions of facts for seconds: a few runs show its cost well enough.
const BASELINE_RUNS = Number(values['baseline-runs'] ?? 3);

const { db, close } = await generatedCatalog('analytics');

try {
  await sql`set maintenance_work_mem = '512MB'`.execute(db);
  await seedCustomers(db, CUSTOMERS);
  // Customers are skewed (a few big ones), formats and sources weighted, 2% failures, latency long-tailed.
  await step(`${FACTS.toLocaleString()} facts over ${DAYS} days`, async () => {
    const batch = 1_000_000;
    // A million rows a step, about 40 s each on 2 cores: the bar shows the generation is moving.
    const progress = new cliProgress.SingleBar(
      {
        format: '  [{bar}] {value}/{total} facts, {eta_formatted} left',
        hideCursor: true,
        stream: process.stdout,
      },
      cliProgress.Presets.shades_classic,
    );
    process.stdout.write('\n');
    progress.start(FACTS, 0);
    for (let start = 0; start < FACTS; start += batch) {
      const count = Math.min(batch, FACTS - start);
      await sql`
        insert into analytics.facts (image_id, customer_id, source, format, outcome, error_code, bytes, width, height, megapixels,
          received_at, processed_at, day, queue_ms, processing_ms)
        select gen_random_uuid(), ids.id,
          case when r1 < 0.8 then 'http' else 'kafka' end,
          (array['jpeg','jpeg','jpeg','png','png','webp','heic','gif','avif','tiff'])[1 + floor(r2 * 10)::int],
          case when r3 < 0.02 then 'failed' else 'processed' end,
          case when r3 < 0.01 then 'CORRUPT_IMAGE' when r3 < 0.02 then 'TOO_MANY_PIXELS' end,
          (50000 + r2 * 8000000)::bigint, 4000, 3000, 12,
          t, t + interval '1 second', t::date, (r1 * 200)::int, (80 + exp(r3 * 6) * 20)::int
        from (
          select random() r1, random() r2, random() r3,
            now() - (random() * ${DAYS}) * interval '1 day' as t,
            1 + floor(power(random(), 3) * ${CUSTOMERS})::int as c
          from generate_series(1, ${count})
        ) g join ids on ids.n = g.c`.execute(db);
      progress.increment(count);
    }
    progress.stop();
  });
  for (const [table, bucket] of [
    ['rollup_daily', sql`day`],
    ['rollup_hourly', sql`date_trunc('hour', received_at)`],
  ] as const) {
    await step(`${table} from the facts`, () =>
      sql`
        insert into ${sql.table(`analytics.${table}`)} (${sql.ref(table === 'rollup_daily' ? 'day' : 'hour')}, customer_id, format, source, outcome, error_code,
          images, bytes, megapixels, queue_ms_sum, processing_ms_sum, latency_hist)
        select ${bucket}, customer_id, format, source, outcome, coalesce(error_code, ''), count(*), sum(bytes), sum(megapixels),
          sum(queue_ms), sum(processing_ms),
          array[${sql.join(Array.from({ length: 19 }, (_, i) => sql`count(*) filter (where b = ${sql.lit(i + 1)})::int`))}]
        from (select *, width_bucket(processing_ms, array[10,20,50,100,200,300,500,750,1000,1500,2000,3000,5000,7500,10000,20000,30000,60000]) + 1 as b
              from analytics.facts) f
        group by 1, 2, 3, 4, 5, 6`.execute(db),
    );
  }
  await step('rollup_daily_totals, rollup_daily_customers, rollup_monthly_customers', async () => {
    await sql`
      insert into analytics.rollup_daily_totals
      select day, format, source, outcome, error_code, sum(images), sum(bytes), sum(megapixels), sum(queue_ms_sum), sum(processing_ms_sum),
        array[${sql.join(Array.from({ length: 19 }, (_, i) => sql`sum(latency_hist[${sql.lit(i + 1)}])::int`))}]
      from analytics.rollup_daily group by 1, 2, 3, 4, 5`.execute(db);
    await sql`
      insert into analytics.rollup_daily_customers
      select day, customer_id, sum(images), coalesce(sum(images) filter (where outcome = 'failed'), 0), sum(bytes)
      from analytics.rollup_daily group by 1, 2`.execute(db);
    await sql`
      insert into analytics.rollup_monthly_customers
      select date_trunc('month', day)::date, customer_id, sum(images), sum(failed), sum(bytes)
      from analytics.rollup_daily_customers group by 1, 2`.execute(db);
  });
  await step('analyze', () => sql`analyze`.execute(db));
  const counts = (
    await sql<{ f: string; d: string; h: string }>`
    select (select count(*) from analytics.facts) f, (select count(*) from analytics.rollup_daily) d, (select count(*) from analytics.rollup_hourly) h`.execute(
      db,
    )
  ).rows[0]!;
  console.log(
    `facts ${Number(counts.f).toLocaleString()}, daily rollup rows ${Number(counts.d).toLocaleString()}, hourly rollup rows ${Number(counts.h).toLocaleString()}`,
  );

  const today = new Date().toISOString().slice(0, 10);
  const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10);
  const big = (
    await sql<{
      id: string;
    }>`select customer_id as id from analytics.rollup_daily group by 1 order by sum(images) desc limit 1`.execute(
      db,
    )
  ).rows[0]!.id;
  const scenarios = [
    { name: 'last 30 days, everyone', filter: { from: daysAgo(29), to: today } },
    { name: `last ${DAYS} days, everyone`, filter: { from: daysAgo(DAYS), to: today } },
    { name: 'last 90 days, largest customer', filter: { from: daysAgo(89), to: today, customerId: big } },
    {
      name: 'last 90 days, kafka, png',
      filter: { from: daysAgo(89), to: today, source: 'kafka', format: 'png' },
    },
    { name: 'today, by the hour', filter: { from: today, to: today } },
  ];

  const timeIt = async (work: () => Promise<unknown>, runs: number) => {
    const times: number[] = [];
    await work(); // warm the cache once, as a dashboard in use would have
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      await work();
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    return { p50: times[Math.floor(runs * 0.5)]!, p95: times[Math.min(runs - 1, Math.floor(runs * 0.95))]! };
  };
  const table: Record<string, Record<string, number | string>> = {};
  for (const s of scenarios) {
    const rollups = await timeIt(() => summary(db, s.filter), RUNS);
    const facts = await timeIt(() => summaryFromFacts(db, s.filter), BASELINE_RUNS);
    table[s.name] = {
      'rollups p50 ms': +rollups.p50.toFixed(1),
      'rollups p95 ms': +rollups.p95.toFixed(1),
      'facts p50 ms': +facts.p50.toFixed(1),
      'facts p95 ms': +facts.p95.toFixed(1),
      'speed-up (p95)': +(facts.p95 / rollups.p95).toFixed(1),
      'under 200 ms': rollups.p95 < 200 ? 'yes' : 'NO',
    };
  }
  console.table(table);
} finally {
  await close();
}

/** The baseline: the dashboard's questions answered from the facts, with no rollups. */
async function summaryFromFacts(
  db: Db,
  f: { from: string; to: string; customerId?: string; source?: string; format?: string },
) {
  const where = sql.join(
    [
      sql`f.day between ${f.from}::date and ${f.to}::date`,
      ...(f.customerId ? [sql`f.customer_id = ${f.customerId}`] : []),
      ...(f.source ? [sql`f.source = ${f.source}`] : []),
      ...(f.format ? [sql`f.format = ${f.format}`] : []),
    ],
    sql` and `,
  );
  const bucket = f.from === f.to ? sql`date_trunc('hour', f.received_at)` : sql`f.day`;
  return Promise.all([
    sql`select count(*), count(*) filter (where outcome = 'failed'), sum(bytes), sum(megapixels), count(distinct customer_id),
          percentile_cont(array[0.5, 0.95]) within group (order by processing_ms) filter (where outcome = 'processed')
        from analytics.facts f where ${where}`.execute(db),
    sql`select ${bucket}, format, count(*), sum(bytes) from analytics.facts f where ${where} group by 1, 2`.execute(
      db,
    ),
    sql`select ${bucket}, percentile_cont(array[0.5, 0.95]) within group (order by processing_ms) from analytics.facts f
        where ${where} and outcome = 'processed' group by 1`.execute(db),
    sql`select customer_id, count(*) from analytics.facts f where ${where} group by 1 order by 2 desc limit 10`.execute(
      db,
    ),
    sql`select source, count(*) from analytics.facts f where ${where} group by 1`.execute(db),
    sql`select format, count(*) from analytics.facts f where ${where} group by 1`.execute(db),
    sql`select error_code, count(*) from analytics.facts f where ${where} and outcome = 'failed' group by 1`.execute(
      db,
    ),
  ]);
}
