import { sql } from 'kysely';
import type { Db } from './database.ts';

/** The first day of the UTC month of a moment, 'YYYY-MM-01': the key of a customer's month. */
export function utcMonth(at: Date): string {
  return `${at.toISOString().slice(0, 7)}-01`;
}

export interface MonthUsage {
  month: string;
  images: number;
  bytes: number;
}

/** A customer's landings in the UTC month of `at` (zero when nothing landed). */
export async function usageOf(db: Db, customerId: string, at: Date): Promise<MonthUsage> {
  const month = utcMonth(at);
  const row = await db
    .selectFrom('quota_usage')
    .select(['images', 'bytes'])
    .where('customer_id', '=', customerId)
    .where('month', '=', month)
    .executeTakeFirst();
  return { month, images: Number(row?.images ?? 0), bytes: Number(row?.bytes ?? 0) };
}

/**
 * Counts one landed image of `bytes` against its customer's month, in the landing's transaction,
 * only if the month stays within `max` (images and bytes; Infinity: no limit). One statement on one
 * row per customer-month: two processes landing at once queue on the row, so the quota is never
 * overrun. Returns the month's usage after the image, or undefined when it would go over.
 */
export async function countLanding(
  db: Db,
  customerId: string,
  at: Date,
  bytes: number,
  max: { images: number; bytes: number },
): Promise<MonthUsage | undefined> {
  const month = utcMonth(at);
  // bigint bounds: "no limit" is the largest bigint, so one statement serves both.
  const maxImages = Number.isFinite(max.images) ? String(max.images) : '9223372036854775807';
  const maxBytes = Number.isFinite(max.bytes) ? String(max.bytes) : '9223372036854775807';
  const result = await sql<{ images: string; bytes: string }>`
    insert into quota_usage as q (customer_id, month, images, bytes)
    select ${customerId}::uuid, ${month}::date, 1, ${bytes}::bigint
    where 1 <= ${maxImages}::bigint and ${bytes}::bigint <= ${maxBytes}::bigint
    on conflict (customer_id, month) do update set
      images = q.images + 1, bytes = q.bytes + excluded.bytes
      where q.images + 1 <= ${maxImages}::bigint and q.bytes + excluded.bytes <= ${maxBytes}::bigint
    returning images, bytes`.execute(db);
  const row = result.rows[0];
  return row ? { month, images: Number(row.images), bytes: Number(row.bytes) } : undefined;
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
