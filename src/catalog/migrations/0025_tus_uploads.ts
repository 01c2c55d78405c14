// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Resumable (tus) uploads: who owns each one, what it said about itself, until when it may be
  // resumed, and the image it became. The bytes live in the lake under tus/; this row is what every
  // api process checks ownership against and what the purge finds abandoned uploads by.
  await db.schema
    .createTable('tus_uploads')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('customer_id', 'uuid', (c) => c.notNull().references('customers.id').onDelete('cascade'))
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('filename', 'text')
    .addColumn('content_type', 'text')
    .addColumn('idempotency_key', 'text')
    .addColumn('priority', 'text', (c) => c.notNull().defaultTo('interactive'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('image_id', 'uuid')
    .execute();
  await sql`create index tus_uploads_unfinished on tus_uploads (expires_at) where image_id is null`.execute(
    db,
  );
  await sql`create index tus_uploads_open_by_customer on tus_uploads (customer_id) where image_id is null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('tus_uploads').execute();
}
