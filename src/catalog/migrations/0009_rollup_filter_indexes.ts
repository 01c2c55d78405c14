// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/** Dashboard filters by source or format with no customer chosen read the full daily rollup by these. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index rollup_daily_format on analytics.rollup_daily (format, day)`.execute(db);
  await sql`create index rollup_daily_source on analytics.rollup_daily (source, day)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index analytics.rollup_daily_format`.execute(db);
  await sql`drop index analytics.rollup_daily_source`.execute(db);
}
