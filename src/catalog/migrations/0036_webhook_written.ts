// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The operators' panel of delivery success per customer counted webhook_deliveries by status over
  // its range: every delivery read, payload and all (138-162 ms for 200,000, 521 MB of table; at ten
  // million images a day, kept seven days, about 175 GB a load). It now adds up these counts of the
  // deliveries written per endpoint and day, and takes the pending and failed ones from their own
  // tables (webhook_due, webhook_failed). Kept by endpoint so that deleting an endpoint (or its
  // customer) takes its counts with its deliveries; in slots, as the rollups are (0032), since every
  // outcome of a customer adds to the same day's row.
  await sql`
    create table webhook_written_daily (
      day date not null,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      slot smallint not null default 0,
      written bigint not null,
      primary key (day, endpoint_id, slot)
    )`.execute(db);
  await sql`
    insert into webhook_written_daily (day, endpoint_id, written)
    select (created_at at time zone 'UTC')::date, endpoint_id, count(*)
      from webhook_deliveries group by 1, 2`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table webhook_written_daily`.execute(db);
}
