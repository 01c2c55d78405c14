import { sql } from 'kysely';
import { counterSlot } from '../catalog/counter-slots.ts';
import type { Db } from '../catalog/database.ts';
import { PREPARE } from '../catalog/prepared-statements.ts';
import { utcDay } from '../clock.ts';
import type { Fact, ProcessorRuns } from './facts.ts';
import { addHistograms, bucketOf, LATENCY_BUCKET_COUNT } from './histogram.ts';

/**
 * The rollup tables of the analytics schema (rollup_daily, rollup_hourly, rollup_daily_totals,
 * rollup_daily_customers, rollup_monthly_customers, rollup_processors_daily). The dashboard's
 * readers (summary.ts, dimensions.ts, processor-stats.ts) read them for answers; every statement
 * that writes them is here.
 */

// ---- Adding an outcome, in the transaction that records it ----

const hourOf = (d: Date) => new Date(Math.floor(d.getTime() / 3_600_000) * 3_600_000);

/**
 * Adds one fact's share to the hourly, daily, totals and per-customer rollups and its processors'
 * runs to the processor rollup. Buckets are by landing time, like the lake's partitions. With sign
 * -1 it takes an earlier outcome's share back out (a retried image is counted once, by its latest
 * outcome); the processor runs it had stay counted, since they did run.
 */
export async function addToRollups(db: Db, f: Fact, megapixels: number, sign: 1 | -1 = 1): Promise<void> {
  if (sign === 1) await rollUpProcessorRuns(db, f.receivedAt, f.customerId, f.processorRuns);
  const bucket = bucketOf(f.processingMs);
  const hist = Array.from({ length: LATENCY_BUCKET_COUNT }, (_, i) => (i + 1 === bucket ? sign : 0));
  const day = utcDay(f.receivedAt);
  const failed = f.outcome === 'failed' ? sign : 0;
  // The wide rollups' sums (hourly, daily, everyone's totals), as each adds an outcome.
  const sums = sql`
        images = r.images + excluded.images,
        bytes = r.bytes + excluded.bytes,
        megapixels = r.megapixels + excluded.megapixels,
        queue_ms_sum = r.queue_ms_sum + excluded.queue_ms_sum,
        processing_ms_sum = r.processing_ms_sum + excluded.processing_ms_sum,
        latency_hist[${bucket}] = r.latency_hist[${bucket}] + ${sign}`;
  const wide = sql`${f.format}, ${f.source}, ${f.outcome}, ${f.errorCode ?? ''}, ${counterSlot}, ${sign}, ${sign * f.bytes},
        ${sign * megapixels}, ${sign * f.queueMs}, ${sign * f.processingMs}, ${hist}::int[]`;
  // Every rollup in one statement (one round trip; PostgreSQL runs each data-modifying WITH once).
  // Prepared: upserts by key, whose plan is the same whatever the values.
  await sql`${PREPARE}
    with hourly as (
      insert into analytics.rollup_hourly as r (hour, customer_id, format, source, outcome, error_code, slot,
        images, bytes, megapixels, queue_ms_sum, processing_ms_sum, latency_hist)
      values (${hourOf(f.receivedAt)}, ${f.customerId}, ${wide})
      on conflict (hour, customer_id, format, source, outcome, error_code, slot) do update set ${sums}
    ), daily as (
      insert into analytics.rollup_daily as r (day, customer_id, format, source, outcome, error_code, slot,
        images, bytes, megapixels, queue_ms_sum, processing_ms_sum, latency_hist)
      values (${day}, ${f.customerId}, ${wide})
      on conflict (day, customer_id, format, source, outcome, error_code, slot) do update set ${sums}
    ), totals as (
      -- The narrow rollups the dashboard reads most: everyone's totals, and each customer's totals.
      insert into analytics.rollup_daily_totals as r (day, format, source, outcome, error_code, slot,
        images, bytes, megapixels, queue_ms_sum, processing_ms_sum, latency_hist)
      values (${day}, ${wide})
      on conflict (day, format, source, outcome, error_code, slot) do update set ${sums}
    ), monthly as (
      -- Each customer's totals by day and by month, for the customer rankings.
      insert into analytics.rollup_monthly_customers as r (month, customer_id, slot, images, failed, bytes)
      values (${`${day.slice(0, 7)}-01`}, ${f.customerId}, ${counterSlot}, ${sign}, ${failed}, ${sign * f.bytes})
      on conflict (month, customer_id, slot) do update set
        images = r.images + excluded.images, failed = r.failed + excluded.failed, bytes = r.bytes + excluded.bytes
    ), customers as (
      -- By day also its exact and near duplicates (0026), for the dashboard's duplicates panel.
      insert into analytics.rollup_daily_customers as r (day, customer_id, slot, images, failed, bytes, exact_duplicates, near_duplicates)
      values (${day}, ${f.customerId}, ${counterSlot}, ${sign}, ${failed}, ${sign * f.bytes},
        ${f.duplicate === 'exact' ? sign : 0}, ${f.duplicate === 'near' ? sign : 0})
      on conflict (day, customer_id, slot) do update set
        images = r.images + excluded.images, failed = r.failed + excluded.failed, bytes = r.bytes + excluded.bytes,
        exact_duplicates = r.exact_duplicates + excluded.exact_duplicates,
        near_duplicates = r.near_duplicates + excluded.near_duplicates
    )
    select 1`.execute(db);
}

/**
 * Adds runs to the processor rollup (by landing day, customer, processor, version and outcome),
 * in one statement whatever the number of processors. Called in the transaction that records them.
 */
export async function rollUpProcessorRuns(
  db: Db,
  receivedAt: Date,
  customerId: string,
  runs: ProcessorRuns,
): Promise<void> {
  const entries = Object.entries(runs);
  if (entries.length === 0) return;
  await sql`
    insert into analytics.rollup_processors_daily as r (day, customer_id, processor, version, outcome, slot, runs, ms_sum, latency_hist)
    select ${utcDay(receivedAt)}::date, ${customerId}::uuid, u.processor, u.version, u.outcome, ${counterSlot}, 1, u.ms,
           (select array_agg((i = u.bucket)::int order by i) from generate_series(1, ${LATENCY_BUCKET_COUNT}) i)
    from unnest(${entries.map(([name]) => name)}::text[], ${entries.map(([, r]) => r.version ?? '')}::text[],
                ${entries.map(([, r]) => r.error ?? 'ok')}::text[], ${entries.map(([, r]) => r.ms ?? 0)}::float8[],
                ${entries.map(([, r]) => bucketOf(r.ms ?? 0))}::int[]) as u(processor, version, outcome, ms, bucket)
    on conflict (day, customer_id, processor, version, outcome, slot) do update set
      runs = r.runs + 1,
      ms_sum = r.ms_sum + excluded.ms_sum,
      latency_hist = (select array_agg(a + b order by n)
                      from unnest(r.latency_hist, excluded.latency_hist) with ordinality as h(a, b, n))`.execute(
    db,
  );
}

// ---- Retention, audit and export ----

/**
 * Deletes aggregate rows older than the statistics window (days before `oldestKeptDay`); a month
 * goes once all of it is past. Returns how many rows went, over all six tables.
 */
export async function prune(db: Db, oldestKeptDay: string): Promise<number> {
  const daily = await db
    .deleteFrom('analytics.rollup_daily')
    .where('day', '<', oldestKeptDay)
    .executeTakeFirst();
  const hourly = await db
    .deleteFrom('analytics.rollup_hourly')
    .where('hour', '<', new Date(`${oldestKeptDay}T00:00:00Z`))
    .executeTakeFirst();
  const narrow = await sql`
    with a as (delete from analytics.rollup_daily_totals where day < ${oldestKeptDay}::date returning 1),
         b as (delete from analytics.rollup_daily_customers where day < ${oldestKeptDay}::date returning 1),
         -- A month goes once all of it is past the window.
         c as (delete from analytics.rollup_monthly_customers where month + interval '1 month' <= ${oldestKeptDay}::date returning 1),
         d as (delete from analytics.rollup_processors_daily where day < ${oldestKeptDay}::date returning 1)
    select (select count(*) from a) + (select count(*) from b) + (select count(*) from c) + (select count(*) from d) as n`.execute(
    db,
  );
  const narrowRows = Number((narrow.rows[0] as { n: string }).n);
  return Number(daily.numDeletedRows) + Number(hourly.numDeletedRows) + narrowRows;
}

/** Daily rollup rows older than `oldestKeptDay`: how many, and the oldest day. */
export async function staleDaily(db: Db, oldestKeptDay: string) {
  return db
    .selectFrom('analytics.rollup_daily')
    .select([(eb) => eb.fn.countAll<string>().as('n'), (eb) => eb.fn.min('day').as('oldest')])
    .where('day', '<', oldestKeptDay)
    .executeTakeFirst();
}

/** Every day that has daily rollup rows. */
export async function rollupDays(db: Db): Promise<string[]> {
  const rows = await sql<{
    day: string;
  }>`select distinct day::text as day from analytics.rollup_daily order by 1`.execute(db);
  return rows.rows.map((r) => r.day);
}

type Page = (db: Db, day: string, offset: number, limit: number) => Promise<Record<string, unknown>[]>;

/** The histograms of a key's slots (a 2-D array from array_agg) added into one. */
function foldHistograms<T extends { latency_hist: number[][] }>(rows: T[]) {
  return rows.map((r) => ({ ...r, latency_hist: r.latency_hist.reduce(addHistograms) }));
}

const ROLLUP_SUMS = sql`sum(images)::bigint as images, sum(bytes)::bigint as bytes, sum(megapixels)::float8 as megapixels,
  sum(queue_ms_sum)::bigint as queue_ms_sum, sum(processing_ms_sum)::bigint as processing_ms_sum,
  array_agg(latency_hist) as latency_hist`;

/**
 * One page of a day's rows of each rollup the export writes, in a stable order: one row per key,
 * its slots (catalog/counter-slots.ts) summed, so the files hold what one row per key would.
 */
export const rollupsOfDay: Record<'daily' | 'hourly' | 'processors', Page> = {
  daily: async (db, day, offset, limit) =>
    foldHistograms(
      (
        await sql<{ latency_hist: number[][] }>`
          select day, customer_id, format, source, outcome, error_code, ${ROLLUP_SUMS}
          from analytics.rollup_daily where day = ${day}
          group by day, customer_id, format, source, outcome, error_code
          order by customer_id, format, source, outcome, error_code limit ${limit} offset ${offset}`.execute(
          db,
        )
      ).rows,
    ),
  hourly: async (db, day, offset, limit) =>
    foldHistograms(
      (
        await sql<{ latency_hist: number[][] }>`
          select hour, customer_id, format, source, outcome, error_code, ${ROLLUP_SUMS}
          from analytics.rollup_hourly where hour >= ${day}::date and hour < ${day}::date + 1
          group by hour, customer_id, format, source, outcome, error_code
          order by hour, customer_id, format, source, outcome, error_code limit ${limit} offset ${offset}`.execute(
          db,
        )
      ).rows,
    ),
  processors: async (db, day, offset, limit) =>
    foldHistograms(
      (
        await sql<{ latency_hist: number[][] }>`
          select day, customer_id, processor, version, outcome, sum(runs)::int as runs, sum(ms_sum)::float8 as ms_sum,
            array_agg(latency_hist) as latency_hist
          from analytics.rollup_processors_daily where day = ${day}
          group by day, customer_id, processor, version, outcome
          order by customer_id, processor, version, outcome limit ${limit} offset ${offset}`.execute(db)
      ).rows,
    ),
};
