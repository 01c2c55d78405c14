// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Each processor's run on the image: {"quality": {"version": "1.0.0", "ms": 208.1, "error": "PROCESSOR_TIMEOUT"}}.
  await sql`alter table analytics.facts add column processor_runs jsonb not null default '{}'`.execute(db);
  // A fact changed after its outcome (a reprocess) is stamped, so the Parquet export rewrites its day.
  await sql`alter table analytics.facts add column updated_at timestamptz`.execute(db);
  // Runs of each processor by landing day, customer, version and outcome ('ok' or the error code),
  // with a latency histogram over the same buckets as the other rollups. Holds no image data, so it
  // is kept for the statistics window like them.
  await sql`
    create table analytics.rollup_processors_daily (
      day date not null,
      customer_id uuid not null,
      processor text not null,
      version text not null,
      outcome text not null,
      runs integer not null,
      ms_sum double precision not null,
      latency_hist integer[] not null,
      primary key (day, customer_id, processor, version, outcome)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table analytics.rollup_processors_daily`.execute(db);
  await sql`alter table analytics.facts drop column processor_runs, drop column updated_at`.execute(db);
}
