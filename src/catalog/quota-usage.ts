import { sql } from 'kysely';
import { counterSlot } from './counter-slots.ts';
import type { Db } from './database.ts';
import { lockQuota } from './locks.ts';

/** The first day of the UTC month of a moment, 'YYYY-MM-01': the key of a customer's month. */
export function utcMonth(at: Date): string {
  return `${at.toISOString().slice(0, 7)}-01`;
}

export interface MonthUsage {
  month: string;
  images: number;
  bytes: number;
}

/** A customer's landings in the UTC month of `at` (zero when nothing landed): the sum of its slots. */
export async function usageOf(db: Db, customerId: string, at: Date): Promise<MonthUsage> {
  const month = utcMonth(at);
  const row = await db
    .selectFrom('quota_usage')
    .select((eb) => [eb.fn.sum<string>('images').as('images'), eb.fn.sum<string>('bytes').as('bytes')])
    .where('customer_id', '=', customerId)
    .where('month', '=', month)
    .executeTakeFirst();
  return { month, images: Number(row?.images ?? 0), bytes: Number(row?.bytes ?? 0) };
}

/**
 * Counts `images` landed images (one by default; several for a group commit) of `bytes` in all
 * against their customer's month, in the landing's transaction, only if the month stays within
 * `max` (images and bytes; Infinity: no limit). Returns false when it would go over.
 *
 * The month is kept in slots (counter-slots.ts), so landings without a quota add to their own row
 * and never wait for each other. A customer with a quota takes turns on its quota lock (any
 * process), reads the month's sum and adds only within it: the lock is held to the commit, so the
 * next landing's sum includes this one and the quota is never overrun.
 */
export async function countLanding(
  db: Db,
  customerId: string,
  at: Date,
  bytes: number,
  max: { images: number; bytes: number },
  images = 1,
): Promise<boolean> {
  const month = utcMonth(at);
  if (Number.isFinite(max.images) || Number.isFinite(max.bytes)) {
    await lockQuota(db, customerId);
    const used = await usageOf(db, customerId, at);
    if (used.images + images > max.images || used.bytes + bytes > max.bytes) return false;
  }
  await sql`
    insert into quota_usage as q (customer_id, month, slot, images, bytes)
    values (${customerId}::uuid, ${month}::date, ${counterSlot}, ${images}::int, ${bytes}::bigint)
    on conflict (customer_id, month, slot) do update set
      images = q.images + excluded.images, bytes = q.bytes + excluded.bytes`.execute(db);
  return true;
}

/**
 * Drops the months before the one of `at`'s previous month: quotas count only the current month,
 * and the previous one is kept for a look back at the turn of the month. Billing reads
 * analytics.usage_daily, not this table. Returns the rows dropped.
 */
export async function pruneMonths(db: Db, at: Date): Promise<number> {
  const previous = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() - 1, 1));
  const result = await db
    .deleteFrom('quota_usage')
    .where('month', '<', utcMonth(previous))
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
