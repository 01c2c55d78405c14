// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // What each open session holds staged, so a customer's staged bytes can be capped.
  await db.schema
    .alterTable('uploads')
    .addColumn('bytes', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`create index uploads_open_by_customer on uploads (customer_id) where image_id is null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists uploads_open_by_customer`.execute(db);
  await db.schema.alterTable('uploads').dropColumn('bytes').execute();
}
