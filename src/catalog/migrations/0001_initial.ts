// Frozen in time: a migration never imports application code, so later changes cannot rewrite history.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('customers')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('role', 'text', (c) => c.notNull().check(sql`role in ('admin', 'customer', 'analyst')`))
    .addColumn('customer_id', 'uuid', (c) => c.references('customers.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull().unique())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', 'timestamptz')
    .execute();

  await db.schema
    .createTable('images')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('customer_id', 'uuid', (c) => c.notNull().references('customers.id'))
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('received', 'processing', 'processed', 'failed')`),
    )
    .addColumn('idempotency_key', 'text')
    .addColumn('filename', 'text')
    .addColumn('checksum', 'text', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('format', 'text', (c) => c.notNull())
    .addColumn('raw_key', 'text', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull())
    .addColumn('processed_at', 'timestamptz')
    .addColumn('width', 'integer')
    .addColumn('height', 'integer')
    .addColumn('metadata', 'jsonb')
    .addColumn('renditions', 'jsonb')
    .addColumn('phash', 'text')
    .addColumn('processors', 'jsonb')
    .addColumn('error_code', 'text')
    .addColumn('error_message', 'text')
    .addColumn('queue_ms', 'integer')
    .addColumn('processing_ms', 'integer')
    .addUniqueConstraint('images_idempotency', ['customer_id', 'idempotency_key'])
    .execute();
  await db.schema
    .createIndex('images_customer_recent')
    .on('images')
    .columns(['customer_id', 'received_at desc', 'id desc'])
    .execute();
  await db.schema.createIndex('images_received_at').on('images').column('received_at').execute();

  await db.schema
    .createTable('jobs')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('image_id', 'uuid', (c) => c.notNull().references('images.id').onDelete('cascade'))
    .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('queued', 'running')`))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_attempts', 'integer', (c) => c.notNull())
    .addColumn('run_at', 'timestamptz', (c) => c.notNull())
    .addColumn('lease_token', 'uuid')
    .addColumn('lease_until', 'timestamptz')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('jobs_due')
    .on('jobs')
    .columns(['run_at'])
    .where(sql.ref('state'), '=', 'queued')
    .execute();
  await db.schema
    .createIndex('jobs_leases')
    .on('jobs')
    .columns(['lease_until'])
    .where(sql.ref('state'), '=', 'running')
    .execute();
  await db.schema.createIndex('jobs_image').on('jobs').column('image_id').execute();

  // Aggregates hold no image data, so they outlive the retention window; no foreign keys on purpose.
  await db.schema
    .createTable('daily_stats')
    .addColumn('day', 'date', (c) => c.notNull())
    .addColumn('customer_id', 'uuid', (c) => c.notNull())
    .addColumn('format', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('images', 'bigint', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('daily_stats_pk', ['day', 'customer_id', 'format', 'source', 'status'])
    .execute();

  await db.schema
    .createTable('purge_runs')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('started_at', 'timestamptz', (c) => c.notNull())
    .addColumn('finished_at', 'timestamptz', (c) => c.notNull())
    .addColumn('window_ms', 'bigint', (c) => c.notNull())
    .addColumn('images', 'integer', (c) => c.notNull())
    .addColumn('objects', 'integer', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['purge_runs', 'daily_stats', 'jobs', 'images', 'api_keys', 'customers']) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
