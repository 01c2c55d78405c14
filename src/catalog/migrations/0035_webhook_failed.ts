// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The deliveries that failed for good, apart from the deliveries themselves, as webhook_due keeps
  // the pending ones (0034). The delivery log filtered by `failed`, and the replay of a range of
  // failed deliveries, walked the endpoint's whole index by time and filtered each row's status: a
  // customer's few failures among hundreds of thousands delivered took 130-160 ms to list, and
  // more with every day kept. An index of webhook_deliveries on status would cost what 0034 saved
  // (a record changes status, so no update would stay in place). A delivery is failed exactly while
  // it has a row here.
  await sql`
    create table webhook_failed (
      delivery_id uuid primary key,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      created_at timestamptz not null
    )`.execute(db);
  await sql`create index webhook_failed_endpoint on webhook_failed (endpoint_id, created_at, delivery_id)`.execute(
    db,
  );
  await sql`
    insert into webhook_failed (delivery_id, endpoint_id, created_at)
    select id, endpoint_id, created_at from webhook_deliveries where status = 'failed'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table webhook_failed`.execute(db);
}
