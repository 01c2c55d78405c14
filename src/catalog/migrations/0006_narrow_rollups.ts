// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/**
 * Narrow rollups for the dashboard's most common questions. The full daily rollup (customer x
 * format x source x outcome x error) grows nearly as large as the facts at thousands of customers;
 * "everyone" views and the top-customers chart need far fewer rows.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table analytics.rollup_daily_totals (
      day date not null,
      format text not null,
      source text not null,
      outcome text not null,
      error_code text not null default '',
      images bigint not null,
      bytes bigint not null,
      megapixels double precision not null default 0,
      queue_ms_sum bigint not null default 0,
      processing_ms_sum bigint not null default 0,
      latency_hist integer[] not null default array_fill(0, array[19]),
      primary key (day, format, source, outcome, error_code)
    )`.execute(db);
  await sql`
    create table analytics.rollup_daily_customers (
      day date not null,
      customer_id uuid not null,
      images bigint not null,
      failed bigint not null,
      bytes bigint not null,
      primary key (day, customer_id)
    )`.execute(db);
  await sql`
    insert into analytics.rollup_daily_totals
    select day, format, source, outcome, error_code, sum(images), sum(bytes), sum(megapixels), sum(queue_ms_sum), sum(processing_ms_sum),
      array[${sql.join(Array.from({ length: 19 }, (_, i) => sql`sum(latency_hist[${sql.lit(i + 1)}])::int`))}]
    from analytics.rollup_daily group by 1, 2, 3, 4, 5`.execute(db);
  await sql`
    insert into analytics.rollup_daily_customers
    select day, customer_id, sum(images), coalesce(sum(images) filter (where outcome = 'failed'), 0), sum(bytes)
    from analytics.rollup_daily group by 1, 2`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table analytics.rollup_daily_customers`.execute(db);
  await sql`drop table analytics.rollup_daily_totals`.execute(db);
}
