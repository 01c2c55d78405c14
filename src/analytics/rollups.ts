import { sql } from 'kysely';
import type { Db } from '../catalog/database.ts';

/**
 * The rollup tables of the analytics schema (rollup_daily, rollup_hourly, rollup_daily_totals,
 * rollup_daily_customers, rollup_monthly_customers, rollup_processors_daily). The dashboard's
 * readers (summary.ts, dimensions.ts, processor-stats.ts) read them for answers; what else touches
 * them is here.
 */

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

/** One page of a day's rows of each rollup the export writes, in a stable order. */
export const rollupsOfDay: Record<'daily' | 'hourly' | 'processors', Page> = {
  daily: async (db, day, offset, limit) =>
    (
      await sql<
        Record<string, unknown>
      >`select * from analytics.rollup_daily where day = ${day} order by customer_id, format, source, outcome, error_code limit ${limit} offset ${offset}`.execute(
        db,
      )
    ).rows,
  hourly: async (db, day, offset, limit) =>
    (
      await sql<
        Record<string, unknown>
      >`select * from analytics.rollup_hourly where hour >= ${day}::date and hour < ${day}::date + 1 order by hour, customer_id, format, source, outcome, error_code limit ${limit} offset ${offset}`.execute(
        db,
      )
    ).rows,
  processors: async (db, day, offset, limit) =>
    (
      await sql<
        Record<string, unknown>
      >`select * from analytics.rollup_processors_daily where day = ${day} order by customer_id, processor, version, outcome limit ${limit} offset ${offset}`.execute(
        db,
      )
    ).rows,
};
