// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The express claim asks "has this customer anything running?" of the few jobs at the head of the
  // queue. Only running jobs are in this index, so it stays as small as the work in flight.
  await sql`create index jobs_running_customer on jobs (customer_id) where state = 'running'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index jobs_running_customer`.execute(db);
}
