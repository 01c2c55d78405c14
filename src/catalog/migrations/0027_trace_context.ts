// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The W3C traceparent of the span that queued a job (the landing, a reprocess request) and of the
  // outcome that wrote an event: the worker's and the publisher's spans continue those traces.
  // images.trace_id is the trace of the image's landing, shown to admins. All null when tracing is off.
  await sql`alter table jobs add column traceparent text`.execute(db);
  await sql`alter table outbox add column traceparent text`.execute(db);
  await sql`alter table images add column trace_id text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table images drop column trace_id`.execute(db);
  await sql`alter table outbox drop column traceparent`.execute(db);
  await sql`alter table jobs drop column traceparent`.execute(db);
}
