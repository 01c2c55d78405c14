import { utcDay } from '../clock.ts';

/** Days in the range every statistics and analytics route reads when from or to is left out. */
export const DEFAULT_RANGE_DAYS = 30;

/**
 * The range asked for; a missing `to` is today (UTC) and a missing `from` is 29 days before `to`,
 * so the default is the last 30 days including today. A range whose `from` is after its `to` holds
 * no day, and every route answers it with nothing (a schema cannot say from <= to, so it is no error).
 */
export function dayRange(query: { from?: string; to?: string }, now: Date): { from: string; to: string } {
  const to = query.to ?? utcDay(now);
  // A `to` that is no real day is refused by validation, not here; the range then ends today.
  const end = Date.parse(`${to}T00:00:00Z`);
  const base = Number.isNaN(end) ? now.getTime() : end;
  const from = query.from ?? utcDay(new Date(base - (DEFAULT_RANGE_DAYS - 1) * 86_400_000));
  return { from, to };
}
