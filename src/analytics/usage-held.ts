import type { Db } from '../catalog/database.ts';
import { heldBytesByCustomer } from '../catalog/images.ts';
import { getSetting, putSetting } from '../catalog/settings.ts';
import { type Clock, utcDay } from '../clock.ts';
import { recordHeld } from './usage.ts';

const LAST_SNAPSHOT = 'usage_held_snapshot_day';

/**
 * The end-of-day snapshot of bytes held in the lake, per customer, for usage: taken by the
 * scheduler at its first tick after a UTC day is over (before that tick's purge), for that day.
 * Idempotent: a day already taken is not taken again, and a customer's value for a day, once
 * written, stays. Images landed after the day ended are not counted. Returns the day taken, if any.
 */
export async function snapshotHeldBytes(deps: { db: Db; clock: Clock }): Promise<string | undefined> {
  const { db, clock } = deps;
  const todayStart = new Date(`${utcDay(clock.now())}T00:00:00Z`);
  const yesterday = utcDay(new Date(todayStart.getTime() - 86_400_000));
  const last = await getSetting(db, LAST_SNAPSHOT);
  if (last !== undefined && last >= yesterday) return undefined;
  await db.transaction().execute(async (trx) => {
    await recordHeld(trx, yesterday, await heldBytesByCustomer(trx, todayStart));
    await putSetting(trx, LAST_SNAPSHOT, yesterday);
  });
  return yesterday;
}
