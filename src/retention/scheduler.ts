import type pg from 'pg';
import type { Logger } from 'pino';
import { withSessionLock } from '../catalog/locks.ts';
import type { Metrics } from '../observability/metrics.ts';

/** The advisory lock that makes the scheduler a singleton across every process sharing the catalog. */
const SCHEDULER_LOCK = 0x1a6e1a;

/**
 * Runs work while holding the scheduler's lock, on a connection of its own (a session lock lives as
 * long as its connection, so a process that dies releases it). { ran: false } when another holds it.
 */
export async function withSchedulerLock<T>(
  pool: pg.Pool,
  work: () => Promise<T>,
): Promise<{ ran: true; value: T } | { ran: false }> {
  return withSessionLock(pool, SCHEDULER_LOCK, work);
}

/**
 * The `scheduler` role: runs periodic work (the retention purge) on one process at a time. Each
 * tick takes a PostgreSQL advisory lock; a process that does not get it skips the tick, so if the
 * holder dies another takes over at its next tick.
 */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<void> | undefined;
  private readonly pool: pg.Pool;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly intervalMs: number;
  private readonly work: () => Promise<unknown>;
  private readonly name: string;

  constructor(options: {
    pool: pg.Pool;
    log: Logger;
    metrics: Metrics;
    intervalMs: number;
    work: () => Promise<unknown>;
    name?: string;
  }) {
    this.pool = options.pool;
    this.log = options.log;
    this.metrics = options.metrics;
    this.intervalMs = options.intervalMs;
    this.work = options.work;
    this.name = options.name ?? 'purge';
  }

  start(): void {
    const tick = () => {
      this.current = this.runOnce()
        .then(
          () => {},
          // The lock's own connection failed (the catalog restarting, or gone): the tick is skipped,
          // not the process. Left unhandled, this rejection ended the process.
          (error: unknown) => {
            this.metrics.purgeRuns.inc({ result: 'error' });
            this.log.warn(
              { err: error, work: this.name },
              'scheduled work could not take its lock (the catalog did not answer); it runs again at the next interval',
            );
          },
        )
        .finally(() => {
          this.current = undefined;
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, Math.min(this.intervalMs, 1000));
  }

  /** Runs the work now if this process gets the lock; returns whether it ran. */
  async runOnce(): Promise<boolean> {
    const result = await withSchedulerLock(this.pool, async () => {
      try {
        await this.work();
      } catch (error) {
        this.metrics.purgeRuns.inc({ result: 'error' });
        this.log.error(
          { err: error, work: this.name },
          'scheduled work failed; it runs again at the next interval',
        );
      }
    });
    return result.ran;
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.current;
  }
}
