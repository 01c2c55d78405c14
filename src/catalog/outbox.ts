import type { Db } from './database.ts';

/** Adds an event to the outbox, in the caller's transaction; ingest/kafka/events.ts publishes it. */
export async function addOutboxEvent(
  db: Db,
  event: { topic: string; key: string; payload: unknown; createdAt: Date },
): Promise<void> {
  await db
    .insertInto('outbox')
    .values({
      topic: event.topic,
      key: event.key,
      payload: JSON.stringify(event.payload),
      created_at: event.createdAt,
    })
    .execute();
}
