import { sql } from 'kysely';
import type { Db } from './database.ts';
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

/** SQL for "this image's window has passed at `now`", for a query joining images i and customers c. */
function expiredCondition(now: Date, platformMs: number) {
  return sql<boolean>`i.received_at < ${now}::timestamptz - least(coalesce(c.retention_ms, ${platformMs}), ${platformMs}) * interval '1 millisecond'`;
}

/**
 * Images past their window at `now`, oldest first. `shortestMs` (the shortest window in force)
 * bounds the scan: nothing younger can have expired.
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
    order by i.received_at
    limit ${limit}`.execute(db);
  return result.rows;
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

/** A batch of a customer's images (or the one image) to erase. */
export async function imagesToErase(
  db: Db,
  target: { customerId: string; imageId?: string },
  limit: number,
): Promise<ImageToDelete[]> {
  let query = db
    .selectFrom('images')
    .select(['id', 'customer_id', 'received_at', 'raw_key'])
    .where('customer_id', '=', target.customerId)
    .limit(limit);
  if (target.imageId) query = query.where('id', '=', target.imageId);
  return query.execute();
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
