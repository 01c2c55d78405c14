// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The delivery log filtered by status (and the replay of a range of failed deliveries) walked the
  // endpoint's whole index by time and filtered each row: a customer's few failures among hundreds
  // of thousands delivered took 130-160 ms to list, and more with every day kept; its pending ones,
  // the newest, came after all the delivered. An index of webhook_deliveries on status would cost
  // what 0034 saved (a record changes status, so no update would stay in place). Instead the two
  // rare statuses are read from narrow tables of their own, by time: the pending ones from
  // webhook_due, which now keeps each delivery's creation time, and the failed ones from
  // webhook_failed. Every failed delivery has a row there.
  await sql`alter table webhook_due add column created_at timestamptz`.execute(db);
  await sql`
    update webhook_due q set created_at = d.created_at from webhook_deliveries d where d.id = q.delivery_id`.execute(
    db,
  );
  await sql`update webhook_due set created_at = now() where created_at is null`.execute(db);
  await sql`alter table webhook_due alter column created_at set not null`.execute(db);
  await sql`create index webhook_due_log on webhook_due (endpoint_id, created_at, delivery_id)`.execute(db);
  await sql`
    create table webhook_failed (
      delivery_id uuid primary key,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      created_at timestamptz not null
    )`.execute(db);
  await sql`create index webhook_failed_log on webhook_failed (endpoint_id, created_at, delivery_id)`.execute(
    db,
  );
  await sql`
    insert into webhook_failed (delivery_id, endpoint_id, created_at)
    select id, endpoint_id, created_at from webhook_deliveries where status = 'failed'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table webhook_failed`.execute(db);
  await sql`drop index webhook_due_log`.execute(db);
  await sql`alter table webhook_due drop column created_at`.execute(db);
}
