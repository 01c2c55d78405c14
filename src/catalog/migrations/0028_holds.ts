// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Legal holds: images kept past their retention window until an admin releases the hold. A hold
  // names a customer (all its images, also those landing while it is active) or a list of images.
  // Rows are never deleted: a released hold keeps its reason and release, and the hash chain holds
  // a receipt of both. objects_locked_through: on a lake with S3 Object Lock, the newest landing
  // whose objects carry an S3 legal hold for this hold (null: none yet).
  await sql`
    create table holds (
      id uuid primary key default gen_random_uuid(),
      customer_id uuid references customers (id),
      image_ids uuid[],
      reason text not null,
      until timestamptz,
      created_at timestamptz not null,
      released_at timestamptz,
      release_reason text,
      objects_locked_through timestamptz,
      check (customer_id is not null or image_ids is not null)
    )`.execute(db);
  await sql`create index holds_active_customer on holds (customer_id) where released_at is null`.execute(db);
  await sql`create index holds_active_images on holds using gin (image_ids) where released_at is null`.execute(
    db,
  );
  // A purge run remembers what holds kept back and what their release let go, for its receipt.
  await sql`alter table purge_runs add column holds jsonb`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table purge_runs drop column holds`.execute(db);
  await sql`drop table holds`.execute(db);
}
