// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The W3C traceparent of the span that wrote a delivery (the landing, the outcome): each attempt's
  // span continues that trace, so an image's trace shows its webhooks. Null when tracing is off.
  await sql`alter table webhook_deliveries add column traceparent text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table webhook_deliveries drop column traceparent`.execute(db);
}
