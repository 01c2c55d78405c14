import type { Selectable } from 'kysely';
import type { Db } from './database.ts';
import type { OutboxTable } from './schema.ts';

/** The `outbox` table: events waiting to be published to Kafka (events/kafka-publisher.ts publishes them). */
export type OutboxRow = Selectable<OutboxTable>;

// ---- Publishing ----

/**
 * Takes up to `limit` events, oldest first, with SKIP LOCKED (so publishers side by side take
 * different ones), hands them to `send`, and deletes them once it returns, all in one transaction:
 * if `send` throws, they stay. Returns the events published.
 */
export async function takeBatch(
  db: Db,
  limit: number,
  send: (rows: OutboxRow[]) => Promise<void>,
): Promise<OutboxRow[]> {
  return db.transaction().execute(async (trx) => {
    const rows = await trx
      .selectFrom('outbox')
      .selectAll()
      .orderBy('id')
      .limit(limit)
      .forUpdate()
      .skipLocked()
      .execute();
    if (rows.length === 0) return rows;
    await send(rows);
    await trx
      .deleteFrom('outbox')
      .where(
        'id',
        'in',
        rows.map((r) => r.id),
      )
      .execute();
    return rows;
  });
}

/** Events waiting. */
export async function countWaiting(db: Db): Promise<number> {
  const row = await db
    .selectFrom('outbox')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

// ---- Writing, in the outcome's transaction ----

/** Adds an event to the outbox, in the caller's transaction; events/kafka-publisher.ts publishes it. */
export async function addOutboxEvent(
  db: Db,
  event: { topic: string; key: string; payload: unknown; createdAt: Date; traceparent?: string | null },
): Promise<void> {
  await db
    .insertInto('outbox')
    .values({
      topic: event.topic,
      key: event.key,
      payload: JSON.stringify(event.payload),
      created_at: event.createdAt,
      traceparent: event.traceparent ?? null,
    })
    .execute();
}
