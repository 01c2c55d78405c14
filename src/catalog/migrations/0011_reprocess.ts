// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // A reprocess run re-runs one processor over the images still in retention. Its cursor (the last
  // image queued, in landing order) makes it resumable: jobs are queued a window at a time.
  await db.schema
    .createTable('reprocess_runs')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('processor', 'text', (c) => c.notNull())
    .addColumn('customer_id', 'uuid')
    .addColumn('since', 'timestamptz')
    .addColumn('force', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('total', 'integer', (c) => c.notNull())
    .addColumn('queued', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('updated', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('skipped', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('failed', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('cursor_received_at', 'timestamptz')
    .addColumn('cursor_id', 'uuid')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('finished_at', 'timestamptz')
    .execute();
  await sql`create index reprocess_runs_running on reprocess_runs (created_at) where status = 'running'`.execute(
    db,
  );
  // A job either runs the whole pipeline (processor null) or one processor for a reprocess run.
  await sql`alter table jobs add column processor text, add column run_id uuid`.execute(db);
  await sql`create index jobs_run on jobs (run_id) where run_id is not null`.execute(db);
  // Images are walked in landing order from the cursor.
  await sql`create index images_received on images (received_at, id)`.execute(db);
  // Labels the processors gave each image; analysts count them with unnest().
  await sql`alter table analytics.facts add column labels text[] not null default '{}'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table analytics.facts drop column labels`.execute(db);
  await sql`drop index images_received`.execute(db);
  await sql`alter table jobs drop column processor, drop column run_id`.execute(db);
  await db.schema.dropTable('reprocess_runs').execute();
}
