import { sql } from 'kysely';

/**
 * The counters every landing and outcome adds to (the rollups, usage_daily, quota_usage) keep each
 * key in up to COUNTER_SLOTS rows (migration 0032): one row per key was a row every concurrent
 * transaction of a customer, or of everyone for the daily totals, queued on until the one holding
 * it committed. A writer adds to the slot of its connection, so two transactions at once touch the
 * same row only when their backends' pids fall on the same slot; readers sum the slots.
 */
export const COUNTER_SLOTS = 16;

/**
 * The slot of the connection running the statement (a connection runs one transaction at a time).
 * A session can pin its slot with the setting imagelake.counter_slot: `npm run bench:rollups` pins
 * every writer to slot 0 to measure one row per key beside the slots, in the same run.
 */
export const counterSlot = sql<number>`coalesce(
  nullif(current_setting('imagelake.counter_slot', true), '')::smallint,
  (pg_backend_pid() % ${sql.lit(COUNTER_SLOTS)})::smallint)`;
