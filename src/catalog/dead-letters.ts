import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * The `dead_letters` table's owner: a record of each Kafka message sent to a dead-letter topic
 * (the bytes stay in the topic). Written by the consumer as it dead-letters, read by
 * GET /v1/failures, marked by `imagelake kafka replay-dlq`, pruned by the purge.
 */
export interface DeadLetter {
  topic: string;
  partition: number;
  offset: bigint;
  customerId: string | null;
  messageId: string | null;
  code: string;
  message: string;
  at: Date;
}

/** Records a dead letter once (a message dead-lettered again after a redelivery is the same one). */
export async function recordDeadLetter(db: Db, d: DeadLetter): Promise<void> {
  await db
    .insertInto('dead_letters')
    .values({
      topic: d.topic,
      partition: d.partition,
      offset: d.offset.toString(),
      customer_id: d.customerId?.slice(0, 200) ?? null,
      message_id: d.messageId?.slice(0, 500) ?? null,
      code: d.code,
      message: d.message.slice(0, 2000),
      dead_lettered_at: d.at,
    })
    .onConflict((oc) => oc.columns(['topic', 'partition', 'offset']).doNothing())
    .execute();
}

/** Which of these original messages (topic/partition/offset) were replayed already. */
export async function replayedAmong(
  db: Db,
  coords: Array<{ topic: string; partition: number; offset: bigint }>,
): Promise<Set<string>> {
  if (coords.length === 0) return new Set();
  const result = await sql<{ topic: string; partition: number; offset: string }>`
    select d.topic, d.partition, d."offset" from dead_letters d
    join unnest(${coords.map((c) => c.topic)}::text[], ${coords.map((c) => c.partition)}::int[],
                ${coords.map((c) => c.offset.toString())}::bigint[]) as c(topic, partition, "offset")
      on d.topic = c.topic and d.partition = c.partition and d."offset" = c."offset"
    where d.replayed_at is not null`.execute(db);
  return new Set(result.rows.map((r) => `${r.topic}/${r.partition}/${r.offset}`));
}

/** Marks an original message replayed (recording it first if the consumer could not). */
export async function markReplayed(db: Db, d: DeadLetter, at: Date): Promise<void> {
  await recordDeadLetter(db, d);
  await db
    .updateTable('dead_letters')
    .set({ replayed_at: at })
    .where('topic', '=', d.topic)
    .where('partition', '=', d.partition)
    .where('offset', '=', d.offset.toString())
    .execute();
}

export interface FailureFilter {
  from: Date;
  to: Date;
  customerId?: string;
  code?: string;
}

/** Dead letters in a range, by code: how many, and the newest few of each. */
export async function deadLettersByCode(db: Db, filter: FailureFilter, examples: number) {
  const result = await sql<{
    code: string;
    total: string;
    topic: string;
    partition: number;
    offset: string;
    customer_id: string | null;
    message: string;
    dead_lettered_at: Date;
    replayed_at: Date | null;
  }>`
    select * from (
      select code, count(*) over (partition by code) as total,
        row_number() over (partition by code order by dead_lettered_at desc, id desc) as n,
        topic, partition, "offset", customer_id, message, dead_lettered_at, replayed_at
      from dead_letters
      where dead_lettered_at >= ${filter.from} and dead_lettered_at < ${filter.to}
        ${filter.customerId ? sql`and customer_id = ${filter.customerId}` : sql``}
        ${filter.code ? sql`and code = ${filter.code}` : sql``}
    ) ranked where n <= ${examples}
    order by code, dead_lettered_at desc`.execute(db);
  return result.rows;
}

/** Drops records older than `before` (their messages have left the dead-letter topic). */
export async function pruneDeadLetters(db: Db, before: Date): Promise<number> {
  const result = await db
    .deleteFrom('dead_letters')
    .where('dead_lettered_at', '<', before)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Records older than `before` the purge should have dropped (for the audit): how many, and the oldest. */
export async function deadLettersBefore(
  db: Db,
  before: Date,
): Promise<{ count: number; oldest: Date | null }> {
  const row = await db
    .selectFrom('dead_letters')
    .select((eb) => [eb.fn.countAll<string>().as('n'), eb.fn.min('dead_lettered_at').as('oldest')])
    .where('dead_lettered_at', '<', before)
    .executeTakeFirstOrThrow();
  return { count: Number(row.n), oldest: (row.oldest as Date | null) ?? null };
}
