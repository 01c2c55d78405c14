import { type RawBuilder, type Selectable, sql } from 'kysely';
import type { Db } from './database.ts';
import type { HoldsTable } from './schema.ts';

/**
 * The `holds` table's owner. A hold covers every image of a customer (image_ids null) or exactly
 * its image_ids, for as long as it is not released. The queries that join holds with images (what
 * a purge skips, what an erasure refuses) are in images-retention.ts, through `coveredBy` below.
 */
export type HoldRow = Selectable<HoldsTable>;

// Placing a hold takes this lock exclusively; a transaction deleting images takes it shared and
// reads the holds after. So a hold answered to its caller is seen by every deletion that commits
// after it, and every image it names still existed when it was placed.
const HOLDS_LOCK = 0x401d5;

export async function lockHoldsExclusive(trx: Db): Promise<void> {
  await sql`select pg_advisory_xact_lock(${HOLDS_LOCK})`.execute(trx);
}

export async function lockHoldsShared(trx: Db): Promise<void> {
  await sql`select pg_advisory_xact_lock_shared(${HOLDS_LOCK})`.execute(trx);
}

/** SQL for "hold `h` covers image `i`", for queries over holds h and images i. */
export function coveredBy(): RawBuilder<boolean> {
  return sql<boolean>`((h.image_ids is null and h.customer_id = i.customer_id) or i.id = any(h.image_ids))`;
}

/** SQL for "image `i` is under an active hold". */
export function underActiveHold(): RawBuilder<boolean> {
  return sql<boolean>`exists (select 1 from holds h where h.released_at is null and ${coveredBy()})`;
}

export async function insertHold(
  trx: Db,
  hold: {
    customerId: string | null;
    imageIds: string[] | null;
    reason: string;
    until: Date | null;
    at: Date;
  },
): Promise<HoldRow> {
  return trx
    .insertInto('holds')
    .values({
      customer_id: hold.customerId,
      image_ids: hold.imageIds,
      reason: hold.reason,
      until: hold.until,
      created_at: hold.at,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function getHold(db: Db, id: string): Promise<HoldRow | undefined> {
  return db.selectFrom('holds').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Newest first; active only unless `all`; one customer's (its own holds and those naming its images) with customerId. */
export async function listHolds(
  db: Db,
  options: { all: boolean; customerId?: string; limit: number; before?: Date },
): Promise<HoldRow[]> {
  let query = db
    .selectFrom('holds')
    .selectAll()
    .orderBy('created_at', 'desc')
    .orderBy('id')
    .limit(options.limit);
  if (!options.all) query = query.where('released_at', 'is', null);
  if (options.customerId) query = query.where('customer_id', '=', options.customerId);
  if (options.before) query = query.where('created_at', '<', options.before);
  return query.execute();
}

/** Releases an active hold; undefined when there is no active hold of that id. */
export async function markReleased(
  trx: Db,
  id: string,
  at: Date,
  reason: string,
): Promise<HoldRow | undefined> {
  return trx
    .updateTable('holds')
    .set({ released_at: at, release_reason: reason })
    .where('id', '=', id)
    .where('released_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
}

/** Active holds, for the audit and for the purge's S3 legal holds. */
export async function activeHolds(db: Db): Promise<HoldRow[]> {
  return db.selectFrom('holds').selectAll().where('released_at', 'is', null).orderBy('created_at').execute();
}

/** Records that the objects of this hold's images landed up to `through` carry an S3 legal hold. */
export async function markObjectsLocked(db: Db, id: string, through: Date): Promise<void> {
  await db
    .updateTable('holds')
    .set({ objects_locked_through: through })
    .where('id', '=', id)
    .where((eb) =>
      eb.or([eb('objects_locked_through', 'is', null), eb('objects_locked_through', '<', through)]),
    )
    .execute();
}
