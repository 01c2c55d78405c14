// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/**
 * Per-customer limits: each customer's own settings (null: the platform's default), the token
 * buckets of its rate limits (shared by every api process), and its usage per UTC month for quotas.
 * The partial index counts a customer's waiting images for its queue share without a scan.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table customers
      add column uploads_per_second double precision,
      add column bytes_per_second bigint,
      add column monthly_images bigint,
      add column monthly_bytes bigint,
      add column queue_share integer`.execute(db);
  await sql`
    create table rate_buckets (
      customer_id uuid not null references customers (id) on delete cascade,
      name text not null,
      tokens double precision not null,
      updated_at timestamptz not null,
      granted boolean not null,
      primary key (customer_id, name)
    )`.execute(db);
  await sql`
    create table quota_usage (
      customer_id uuid not null references customers (id) on delete cascade,
      month date not null,
      images bigint not null,
      bytes bigint not null,
      primary key (customer_id, month)
    )`.execute(db);
  await sql`create index images_waiting_by_customer on images (customer_id) where status = 'received'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index images_waiting_by_customer`.execute(db);
  await sql`drop table quota_usage`.execute(db);
  await sql`drop table rate_buckets`.execute(db);
  await sql`
    alter table customers
      drop column uploads_per_second, drop column bytes_per_second, drop column monthly_images,
      drop column monthly_bytes, drop column queue_share`.execute(db);
}
