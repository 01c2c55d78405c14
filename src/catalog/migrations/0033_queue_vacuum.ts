// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // A claim turns a queued job into a running one, and the queued row version stays in jobs_fair's
  // head until a vacuum takes it: every claim walks past those of the jobs claimed since the last
  // one (3.9 ms and 706 buffers for an empty queue after 1,000 images). The queue's live rows are
  // few, so it is vacuumed after every thousand dead ones, not after a fifth of the table, and
  // without the cost-based pauses that suit big tables.
  await sql`
    alter table jobs set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                          autovacuum_vacuum_cost_delay = 0)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table jobs reset (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
                            autovacuum_vacuum_cost_delay)`.execute(db);
}
