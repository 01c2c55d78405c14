// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Usage for billing, per customer per UTC day. Received counts by landing day; processed, failed
  // and processing time by the day of the outcome; bytes_held is the end-of-day snapshot (null
  // until the scheduler has taken it). processor_ms: {"quality": 412.5}. Holds no image data, so
  // it is kept for the statistics window like the rollups.
  await sql`
    create table analytics.usage_daily (
      day date not null,
      customer_id uuid not null,
      images_received bigint not null default 0,
      bytes_received bigint not null default 0,
      images_processed bigint not null default 0,
      images_failed bigint not null default 0,
      processing_ms bigint not null default 0,
      cpu_ms double precision not null default 0,
      processor_ms jsonb not null default '{}',
      bytes_held bigint,
      primary key (day, customer_id)
    )`.execute(db);
  await sql`create index usage_daily_customer on analytics.usage_daily (customer_id, day)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table analytics.usage_daily`.execute(db);
}
