import { retentionOf, retentionsOf, shortestRetention } from '../catalog/customers.ts';
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
  return effectiveWindow(platformMs, await retentionOf(db, customerId));
}

/** The windows of several customers at once (a page of images), by customer id. */
export async function customerWindows(
  db: Db,
  customerIds: string[],
  platformMs: number,
): Promise<Map<string, number>> {
  const own = await retentionsOf(db, [...new Set(customerIds)]);
  return new Map(customerIds.map((id) => [id, effectiveWindow(platformMs, own.get(id))]));
}

/** The shortest window in force: nothing younger than this can have expired. */
export async function shortestWindow(db: Db, platformMs: number): Promise<number> {
  return effectiveWindow(platformMs, await shortestRetention(db));
}
