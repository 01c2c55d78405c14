// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The deliveries waiting for an attempt, apart from the deliveries themselves. Recording an
  // attempt changed status and next_attempt_at, which webhook_deliveries_due indexed: every record
  // wrote a whole new row version (payload and all) and an entry in each of the table's indexes,
  // 1.7 KB of WAL and 44 µs of PostgreSQL per delivery. With what is due in this narrow table, no
  // index of webhook_deliveries covers what a record changes, so PostgreSQL updates the row in
  // place on its page (a HOT update: no index entries, the unchanged payload left out of the WAL)
  // and deletes the due row. A delivery is pending exactly while it has a row here.
  await sql`
    create table webhook_due (
      delivery_id uuid primary key,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      next_attempt_at timestamptz not null
    )`.execute(db);
  await sql`create index webhook_due_endpoint on webhook_due (endpoint_id, next_attempt_at)`.execute(db);
  await sql`
    insert into webhook_due (delivery_id, endpoint_id, next_attempt_at)
    select id, endpoint_id, coalesce(next_attempt_at, now()) from webhook_deliveries where status = 'pending'`.execute(
    db,
  );
  await sql`drop index webhook_deliveries_due`.execute(db);
  // Room on each page for every row's next version: an update stays in place only if its page has
  // it. A delivery is recorded once when its first attempt succeeds, so half of each page is kept
  // free; more attempts than that move to another page, as every update did before.
  await sql`alter table webhook_deliveries set (fillfactor = 50)`.execute(db);
  // Rows come and go at the rate of deliveries, and the claim walks the index past the dead ones
  // until a vacuum takes them: vacuumed after every thousand, as the jobs queue is (0033).
  await sql`
    alter table webhook_due set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                                 autovacuum_vacuum_cost_delay = 0)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table webhook_deliveries reset (fillfactor)`.execute(db);
  await sql`
    create index webhook_deliveries_due on webhook_deliveries (endpoint_id, next_attempt_at)
      where status = 'pending'`.execute(db);
  await sql`drop table webhook_due`.execute(db);
}
