// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // One dispatcher process at a time sends an endpoint's deliveries, under a lease on the endpoint
  // row: the per-endpoint concurrency is then that process's own count, and a claim reads due
  // deliveries without writing each one (a lease per delivery cost two row versions per attempt
  // and a count over every lease at every claim).
  await sql`
    alter table webhook_endpoints
      add column dispatcher uuid,
      add column dispatcher_until timestamptz`.execute(db);
  await sql`alter table webhook_deliveries drop column lease_token, drop column lease_until`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table webhook_deliveries add column lease_token uuid, add column lease_until timestamptz`.execute(
    db,
  );
  await sql`
    create index webhook_deliveries_leased on webhook_deliveries (endpoint_id)
      where lease_token is not null`.execute(db);
  await sql`alter table webhook_endpoints drop column dispatcher, drop column dispatcher_until`.execute(db);
}
