import { type ClaimedJob, claim, renewLeases, retryLater } from '../catalog/queue.ts';
import { epochMs } from '../observability/tracing.ts';
import type { JobContext, JobHandler } from './jobs/context.ts';
import { jobRegistry } from './jobs/registry.ts';
import { type ClaimTimes, inJobSpan } from './trace.ts';

export interface RunnerDeps extends JobContext {
  /** Wakes the runner when a job is queued (PostgreSQL LISTEN); polling covers a missed wake-up. */
  subscribe?: (wake: () => void) => void;
  /** The job kinds' handlers; processing/jobs/registry.ts lists them. */
  handlers?: JobHandler[];
}

/**
 * The `worker` role: claims jobs, holds their leases while their handlers work, backs off a job
 * whose handler failed unexpectedly. What a job does is its kind's handler (processing/jobs/).
 */
export class Runner {
  private readonly deps: RunnerDeps;
  private readonly handlers: Map<string, JobHandler>;
  private readonly inFlight = new Map<string, ClaimedJob>();
  private running = false;
  private wake: (() => void) | undefined;
  /** A job notice came while the loop was busy claiming: claim again instead of waiting a poll interval. */
  private notified = false;
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly tasks = new Set<Promise<void>>();

  /** Throws when a job kind has no handler or two: the worker does not start. */
  constructor(deps: RunnerDeps) {
    this.deps = deps;
    this.handlers = jobRegistry(deps.handlers);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.deps.subscribe?.(() => {
      this.notified = true;
      this.wake?.();
    });
    // Renew at a third of the lease so two missed beats still leave time before it expires.
    this.heartbeat = setInterval(() => void this.renew(), Math.max(250, this.deps.options.leaseMs / 3));
    this.loop = this.run();
  }

  /** Stops claiming, lets the jobs in hand finish (or gives up waiting after graceMs), then returns. */
  async stop(graceMs = 30_000): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    const all = Promise.all(this.tasks);
    await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
    clearInterval(this.heartbeat);
  }

  get busy(): number {
    return this.inFlight.size;
  }

  /** Each kind's own work before a claim (reprocess runs top up their window). */
  private async beforeClaim(): Promise<void> {
    for (const handler of this.handlers.values()) {
      try {
        await handler.beforeClaim?.(this.deps);
      } catch (error) {
        this.deps.log.warn({ err: error, kind: handler.kind }, 'a job kind failed its work before claiming');
      }
    }
  }

  private async run(): Promise<void> {
    const { concurrency, pollIntervalMs, leaseMs } = this.deps.options;
    while (this.running) {
      this.notified = false;
      await this.beforeClaim();
      const free = concurrency - this.inFlight.size;
      let claimed: ClaimedJob[] = [];
      const times: ClaimTimes = { start: epochMs(), end: 0 };
      if (free > 0) {
        try {
          claimed = await claim(this.deps.db, free, leaseMs);
        } catch (error) {
          this.deps.log.error({ err: error }, 'claiming jobs failed; retrying');
        }
      }
      times.end = epochMs();
      for (const job of claimed) {
        this.inFlight.set(job.leaseToken, job);
        const task = this.handle(job, times).finally(() => {
          this.inFlight.delete(job.leaseToken);
          this.tasks.delete(task);
          this.wake?.();
        });
        this.tasks.add(task);
      }
      if (claimed.length === free && free > 0) continue;
      if (this.notified && free > claimed.length) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollIntervalMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private async renew(): Promise<void> {
    const tokens = [...this.inFlight.keys()];
    if (tokens.length === 0) return;
    try {
      const held = await renewLeases(this.deps.db, tokens, this.deps.options.leaseMs);
      for (const token of tokens) {
        if (!held.has(token))
          this.deps.log.warn(
            { job: this.inFlight.get(token)?.id },
            'lease lost; another worker may take this job',
          );
      }
    } catch (error) {
      this.deps.log.warn({ err: error }, 'renewing leases failed');
    }
  }

  /** One job, in its span: a child of the span that queued it, which is how the image's trace crosses the queue. */
  private async handle(job: ClaimedJob, claimed: ClaimTimes): Promise<void> {
    const { db, log } = this.deps;
    await inJobSpan(job, claimed, async () => {
      const handler = this.handlers.get(job.kind);
      if (!handler) throw new Error(`No handler for the job kind ${job.kind}`);
      await handler.handle(this.deps, job, handler.payload(job));
    }).catch(async (error) => {
      log.error(
        { err: error, job: job.id, image: job.imageId },
        'processing job failed unexpectedly; it will be retried',
      );
      await retryLater(db, job, String((error as Error)?.message ?? error)).catch(() => {});
    });
  }
}
