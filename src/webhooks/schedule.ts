/**
 * The retry schedule of the Standard Webhooks specification: the first attempt at once, then after
 * each failure 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (about three days in all).
 * RETRY_SCHEDULE_MS[n] is the wait before attempt n + 1 of a round (a round starts when the
 * delivery is written or replayed).
 */
export const RETRY_SCHEDULE_MS = [
  0,
  5_000,
  5 * 60_000,
  30 * 60_000,
  2 * 3_600_000,
  5 * 3_600_000,
  10 * 3_600_000,
  14 * 3_600_000,
  20 * 3_600_000,
  24 * 3_600_000,
] as const;

/** The longest a receiver's Retry-After is honoured: past a day the schedule's own step applies. */
const MAX_RETRY_AFTER_MS = 24 * 3_600_000;

/**
 * How long to wait after a failed attempt, given the attempts of the round so far (this one
 * included); undefined when the schedule is used up. A receiver's Retry-After replaces the step.
 */
export function retryDelay(attemptsDone: number, retryAfterMs?: number): number | undefined {
  const step = RETRY_SCHEDULE_MS[attemptsDone];
  if (step === undefined) return undefined;
  if (retryAfterMs !== undefined && retryAfterMs >= 0 && retryAfterMs <= MAX_RETRY_AFTER_MS)
    return retryAfterMs;
  return step;
}

/** A Retry-After header (seconds, or an HTTP date) in milliseconds from `now`; undefined if absent or unreadable. */
export function parseRetryAfter(header: string | undefined, now: Date): number | undefined {
  if (!header) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now.getTime());
}
