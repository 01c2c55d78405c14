import { sql } from 'kysely';
import type { Db } from '../catalog/database.ts';

/**
 * The retention window that applies to a customer's images: its own when shorter, otherwise the
 * platform's. A customer's window can never make an image live longer than the platform allows.
 */
export function effectiveWindow(platformMs: number, customerMs: string | number | null | undefined): number {
  const own = customerMs === null || customerMs === undefined ? platformMs : Number(customerMs);
  return Math.min(own, platformMs);
}

export async function customerWindow(db: Db, customerId: string, platformMs: number): Promise<number> {
  const row = await db
    .selectFrom('customers')
    .select('retention_ms')
    .where('id', '=', customerId)
    .executeTakeFirst();
  return effectiveWindow(platformMs, row?.retention_ms);
}

/** The shortest window in force: nothing younger than this can have expired. */
export async function shortestWindow(db: Db, platformMs: number): Promise<number> {
  const row = await db
    .selectFrom('customers')
    .select((eb) => eb.fn.min('retention_ms').as('min'))
    .executeTakeFirst();
  return effectiveWindow(platformMs, row?.min as string | null);
}

/** SQL for "this image's window has passed at `now`", for a query joining images i and customers c. */
export function expiredCondition(now: Date, platformMs: number) {
  return sql<boolean>`i.received_at < ${now}::timestamptz - least(coalesce(c.retention_ms, ${platformMs}), ${platformMs}) * interval '1 millisecond'`;
}
