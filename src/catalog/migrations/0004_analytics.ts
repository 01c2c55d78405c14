// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/** Upper bounds (ms) of the latency histogram buckets kept in every rollup row; the last is unbounded. */
const BUCKETS = 19;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists analytics`.execute(db);

  // One row per image that reached an outcome. Follows the image's retention window.
  await sql`
    create table analytics.facts (
      image_id uuid primary key,
      customer_id uuid not null,
      source text not null,
      format text not null,
      outcome text not null check (outcome in ('processed', 'failed')),
      error_code text,
      bytes bigint not null,
      width integer,
      height integer,
      megapixels double precision,
      received_at timestamptz not null,
      processed_at timestamptz not null,
      day date not null,
      queue_ms integer not null,
      processing_ms integer not null,
      processors jsonb not null default '{}',
      dimensions jsonb not null default '{}'
    )`.execute(db);
  await sql`create index facts_day on analytics.facts (day)`.execute(db);
  await sql`create index facts_customer_day on analytics.facts (customer_id, day)`.execute(db);

  // Aggregates: no image data, kept for the statistics window. error_code is '' for processed images.
  for (const [table, bucket, type] of [
    ['rollup_hourly', 'hour', 'timestamptz'],
    ['rollup_daily', 'day', 'date'],
  ] as const) {
    await sql`
      create table ${sql.table(`analytics.${table}`)} (
        ${sql.ref(bucket)} ${sql.raw(type)} not null,
        customer_id uuid not null,
        format text not null,
        source text not null,
        outcome text not null,
        error_code text not null default '',
        images bigint not null,
        bytes bigint not null,
        megapixels double precision not null default 0,
        queue_ms_sum bigint not null default 0,
        processing_ms_sum bigint not null default 0,
        latency_hist integer[] not null default array_fill(0, array[${sql.lit(BUCKETS)}]),
        primary key (${sql.ref(bucket)}, customer_id, format, source, outcome, error_code)
      )`.execute(db);
  }
  await sql`create index rollup_daily_customer on analytics.rollup_daily (customer_id, day)`.execute(db);

  // Analysts see customers' names through a view; the table itself stays out of their reach.
  await sql`create view analytics.customers as select id, name, created_at from public.customers`.execute(db);

  // The daily aggregates so far become the daily rollup.
  await sql`
    insert into analytics.rollup_daily (day, customer_id, format, source, outcome, images, bytes)
    select day, customer_id, format, source, status, images, bytes from public.daily_stats`.execute(db);
  await sql`drop table public.daily_stats`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema analytics cascade`.execute(db);
}
