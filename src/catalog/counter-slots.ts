import { randomInt } from 'node:crypto';
import { sql } from 'kysely';
import type pg from 'pg';

/**
 * The counters every landing and outcome adds to (the rollups, usage_daily, quota_usage) keep each
 * key in up to COUNTER_SLOTS rows (migration 0032): one row per key was a row every concurrent
 * transaction of a customer, or of everyone for the daily totals, queued on until the one holding
 * it committed. A writer adds to the slot of its connection, so two transactions at once touch the
 * same row only when their backends' pids fall on the same slot; readers sum the slots.
 */
export const COUNTER_SLOTS = 16;

/**
 * The slot of the connection running the statement (a connection runs one transaction at a time):
 * its setting imagelake.counter_slot, given when it connects (spreadCounterSlots), else its
 * backend's pid. `npm run bench:rollups` pins every writer to slot 0 in the connection string, to
 * measure one row per key beside the slots in the same run.
 */
export const counterSlot = sql<number>`coalesce(
  nullif(current_setting('imagelake.counter_slot', true), '')::smallint,
  (pg_backend_pid() % ${sql.lit(COUNTER_SLOTS)})::smallint)`;

// The next connection's slot, counted over every pool of the process from a random start, so a
// process's connections (up to COUNTER_SLOTS of them) never share a slot; pids alone often did.
let nextSlot = randomInt(COUNTER_SLOTS);

/** Gives each new connection of the pool a slot of its own, unless its connection string pinned one. */
export function spreadCounterSlots(pool: pg.Pool): void {
  pool.on('connect', (client) => {
    const slot = String(nextSlot++ % COUNTER_SLOTS);
    // Queued before whatever the pool hands the client out for. A failure only leaves the pid's slot.
    client
      .query(
        `select set_config('imagelake.counter_slot', $1, false)
         where coalesce(current_setting('imagelake.counter_slot', true), '') = ''`,
        [slot],
      )
      .catch(() => {});
  });
}
