import { type RawBuilder, sql } from 'kysely';
import type { Db } from './database.ts';
import { coveredBy, underActiveHold } from './holds.ts';
import type { ImageRow } from './schema.ts';

/**
 * The `images` table, part two: the queries of an image's end (the retention purge, erasure, the
 * storage audit). Part one, `images.ts`, holds landing, the API's reads and processing's updates.
 * Two files for one owner because the processing updates change often and these rarely; both are
 * the only places that write SQL on `images`.
 */
export interface ImageToDelete {
  id: string;
  customer_id: string;
  received_at: Date;
  raw_key: string;
}

/**
 * SQL for "this image's window has passed at `now`" (a moment, or a column such as h.released_at),
 * for a query joining images i and customers c.
 */
function expiredCondition(now: Date | RawBuilder<Date>, platformMs: number) {
  return sql<boolean>`i.received_at < ${now}::timestamptz - least(coalesce(c.retention_ms, ${platformMs}), ${platformMs}) * interval '1 millisecond'`;
}

/**
 * Images past their window at `now` and under no active hold, oldest first. `shortestMs` (the
 * shortest window in force) bounds the scan: nothing younger can have expired.
 */
export async function expiredImages(
  db: Db,
  now: Date,
  retentionMs: number,
  shortestMs: number,
  limit: number,
): Promise<ImageToDelete[]> {
  const result = await sql<ImageToDelete>`
    select i.id, i.customer_id, i.received_at, i.raw_key
    from images i join customers c on c.id = i.customer_id
    where i.received_at < ${new Date(now.getTime() - shortestMs)} and ${expiredCondition(now, retentionMs)}
      and not ${underActiveHold()}
    order by i.received_at
    limit ${limit}`.execute(db);
  return result.rows;
}

/** Per hold: how many images (and bytes) past their window at `now` it keeps. */
export type HoldCounts = Record<string, { images: number; bytes: number }>;

/** Images (and bytes) by hold h, of the images i (of customers c) matching `where`. */
async function countByHold(db: Db, where: RawBuilder<boolean>): Promise<HoldCounts> {
  const result = await sql<{ hold_id: string; images: string; bytes: string | null }>`
    select h.id as hold_id, count(*) as images, sum(i.bytes) as bytes
    from images i join customers c on c.id = i.customer_id join holds h on ${coveredBy()}
    where ${where}
    group by h.id`.execute(db);
  return Object.fromEntries(
    result.rows.map((r) => [r.hold_id, { images: Number(r.images), bytes: Number(r.bytes ?? 0) }]),
  );
}

/**
 * What holds mean to a purge at `now`, by hold: `kept`, the images past their window that active
 * holds keep (an image under two holds counts for each); `released`, those it may take only because
 * a hold was released after their window had passed (and no active hold keeps them).
 */
export async function expiredByHold(
  db: Db,
  now: Date,
  retentionMs: number,
  shortestMs: number,
): Promise<{ kept: HoldCounts; released: HoldCounts }> {
  const expired = sql<boolean>`i.received_at < ${new Date(now.getTime() - shortestMs)} and ${expiredCondition(now, retentionMs)}`;
  return {
    kept: await countByHold(db, sql<boolean>`h.released_at is null and ${expired}`),
    released: await countByHold(
      db,
      sql<boolean>`h.released_at is not null and ${expiredCondition(sql<Date>`h.released_at`, retentionMs)}
        and ${expired} and not ${underActiveHold()}`,
    ),
  };
}

/** What active holds keep of a customer's images (or the one image), by hold: what an erasure would break. */
export async function heldOf(db: Db, target: { customerId: string; imageId?: string }): Promise<HoldCounts> {
  return countByHold(
    db,
    sql<boolean>`h.released_at is null and i.customer_id = ${target.customerId}
      ${target.imageId ? sql`and i.id = ${target.imageId}` : sql``}`,
  );
}

/** Which of these images are under an active hold. */
export async function heldAmong(trx: Db, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const result = await sql<{ id: string }>`
    select i.id from images i where i.id = any(${ids}::uuid[]) and ${underActiveHold()}`.execute(trx);
  return new Set(result.rows.map((r) => r.id));
}

/** The active holds over each of these images (for the audit), by image id. */
export async function holdsOver(db: Db, ids: string[]): Promise<Map<string, string[]>> {
  const held = new Map<string, string[]>();
  if (ids.length === 0) return held;
  const result = await sql<{ id: string; hold_id: string }>`
    select i.id, h.id as hold_id from images i join holds h on ${coveredBy()}
    where h.released_at is null and i.id = any(${ids}::uuid[])`.execute(db);
  for (const row of result.rows) held.set(row.id, [...(held.get(row.id) ?? []), row.hold_id]);
  return held;
}

/** The images a hold covers that landed after `after` (null: all), oldest first, a page at a time. */
export async function imagesOfHold(
  db: Db,
  holdId: string,
  after: { receivedAt: Date; id: string } | null,
  limit: number,
): Promise<ImageToDelete[]> {
  const result = await sql<ImageToDelete>`
    select i.id, i.customer_id, i.received_at, i.raw_key
    from images i join holds h on ${coveredBy()}
    where h.id = ${holdId}
      ${after ? sql`and (i.received_at, i.id) > (${after.receivedAt}, ${after.id}::uuid)` : sql``}
    order by i.received_at, i.id
    limit ${limit}`.execute(db);
  return result.rows;
}

/** Whether an image is under an active hold other than `holdId`. */
export async function heldElsewhere(db: Db, imageId: string, holdId: string): Promise<boolean> {
  const result = await sql<{ held: boolean }>`
    select exists (
      select 1 from images i join holds h on ${coveredBy()}
      where i.id = ${imageId} and h.released_at is null and h.id <> ${holdId}
    ) as held`.execute(db);
  return result.rows[0]?.held ?? false;
}

/** These images that exist, with their customer. */
export async function imagesAmong(
  db: Db,
  ids: string[],
): Promise<Array<{ id: string; customer_id: string }>> {
  if (ids.length === 0) return [];
  return db.selectFrom('images').select(['id', 'customer_id']).where('id', 'in', ids).execute();
}

/** How far past its expiry the oldest image still present is, in seconds (may be negative or 0). */
export async function oldestOverdueSeconds(
  db: Db,
  now: Date,
  retentionMs: number,
  shortestMs: number,
): Promise<number> {
  const result = await sql<{ lag: number | null }>`
    select max(extract(epoch from (${now}::timestamptz - i.received_at)) - least(coalesce(c.retention_ms, ${retentionMs}), ${retentionMs}) / 1000.0)::float8 as lag
    from images i join customers c on c.id = i.customer_id
    where i.received_at < ${new Date(now.getTime() - shortestMs)}`.execute(db);
  return result.rows[0]?.lag ?? 0;
}

/** A batch of a customer's images (or the one image) to erase; those under a hold only with includeHeld. */
export async function imagesToErase(
  db: Db,
  target: { customerId: string; imageId?: string },
  limit: number,
  options: { includeHeld: boolean },
): Promise<ImageToDelete[]> {
  const result = await sql<ImageToDelete>`
    select i.id, i.customer_id, i.received_at, i.raw_key from images i
    where i.customer_id = ${target.customerId}
      ${target.imageId ? sql`and i.id = ${target.imageId}` : sql``}
      ${options.includeHeld ? sql`` : sql`and not ${underActiveHold()}`}
    limit ${limit}`.execute(db);
  return result.rows;
}

/** Locks the rows of these images that are still there and not locked by another run (in a transaction). */
export async function lockForDeletion(trx: Db, ids: string[]): Promise<Array<{ id: string; bytes: string }>> {
  return trx
    .selectFrom('images')
    .select(['id', 'bytes'])
    .where('id', 'in', ids)
    .forUpdate()
    .skipLocked()
    .execute();
}

export async function deleteImages(trx: Db, ids: string[]): Promise<void> {
  await trx.deleteFrom('images').where('id', 'in', ids).execute();
}

export async function countImages(db: Db): Promise<number> {
  const row = await db
    .selectFrom('images')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** A page of every image, by id after `after`, with what the audit checks. */
export async function auditPage(
  db: Db,
  after: string,
  limit: number,
): Promise<
  Array<Pick<ImageRow, 'id' | 'customer_id' | 'received_at' | 'raw_key' | 'status' | 'renditions'>>
> {
  return db
    .selectFrom('images')
    .select(['id', 'customer_id', 'received_at', 'raw_key', 'status', 'renditions'])
    .where('id', '>', after)
    .orderBy('id')
    .limit(limit)
    .execute();
}
