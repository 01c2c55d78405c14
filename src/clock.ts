/** Time behind an interface so retention and scheduling can be tested without waiting. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** The UTC calendar day of a moment, 'YYYY-MM-DD': the day of lake partitions, rollups and retention. */
export function utcDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}
