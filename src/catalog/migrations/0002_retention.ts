// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // A customer may be kept for less than the platform's window, never more.
  await db.schema.alterTable('customers').addColumn('retention_ms', 'bigint').execute();

  // Replaced by runs, a ledger and receipts.
  await db.schema.dropTable('purge_runs').execute();

  // A purge or an erasure in progress. One row per run; sealed when its receipt is written.
  await db.schema
    .createTable('purge_runs')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('retention', 'erasure')`))
    .addColumn('scope', 'jsonb', (c) => c.notNull())
    .addColumn('started_at', 'timestamptz', (c) => c.notNull())
    .addColumn('window_ms', 'bigint')
    // Touched by the process working on the run; a run left untouched has lost its process.
    .addColumn('heartbeat_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('sealed_at', 'timestamptz')
    .execute();

  // Every copy a run deletes, written before the deleting starts, so a run killed midway is resumed
  // from here: nothing it planned is forgotten and nothing is counted twice.
  await db.schema
    .createTable('purge_ledger')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('run_id', 'uuid', (c) => c.notNull().references('purge_runs.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('key', 'text')
    .addColumn('subject_hash', 'text')
    .addColumn('bytes', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('done', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  await db.schema
    .createIndex('purge_ledger_pending')
    .on('purge_ledger')
    .columns(['run_id', 'id'])
    .where(sql.ref('done'), '=', false)
    .execute();

  await db.schema
    .createTable('purge_receipts')
    .addColumn('seq', 'bigserial', (c) => c.primaryKey())
    .addColumn('run_id', 'uuid', (c) => c.notNull().unique())
    .addColumn('body', 'jsonb', (c) => c.notNull())
    .addColumn('prev_hash', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  // Append-only at the database itself: changing or removing a receipt takes disabling this trigger,
  // a deliberate act the hash chain then exposes.
  await sql`
    create function purge_receipts_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'purge receipts are append-only';
    end $$`.execute(db);
  await sql`
    create trigger purge_receipts_append_only before update or delete or truncate on purge_receipts
    for each statement execute function purge_receipts_append_only()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('purge_receipts').execute();
  await sql`drop function if exists purge_receipts_append_only()`.execute(db);
  await db.schema.dropTable('purge_ledger').execute();
  await db.schema.dropTable('purge_runs').execute();
  await db.schema.alterTable('customers').dropColumn('retention_ms').execute();
}
