import { type ClaimedJob, claim, claimExpress, renewLeases, retryLater } from '../catalog/queue.ts';
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
 *
 * It holds up to `concurrency` jobs claimed in the queue's fair order, and up to `express` more
 * through the express lane (catalog/queue.ts claimExpress): when its slots are full and a new job
 * is queued, a customer with nothing running starts at once instead of after an image in flight.
 */
export class Runner {
  private readonly deps: RunnerDeps;
  private readonly handlers: Map<string, JobHandler>;
  private readonly inFlight = new Map<string, ClaimedJob>();
  /** Of inFlight, the jobs taken through the express lane. */
  private expressInFlight = 0;
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
    const { concurrency, pollIntervalMs } = this.deps.options;
    let polled = false;
    while (this.running) {
      // A job was queued (or a poll came round) since the last pass: worth an express look.
      const fresh = this.notified || polled;
      this.notified = false;
      await this.beforeClaim();
      const free = concurrency - (this.inFlight.size - this.expressInFlight);
      // Timed for the jobs' traces: each job's span starts with the claim that took it.
      const times: ClaimTimes = { start: epochMs(), end: 0 };
      const claimed =
        free > 0 ? await this.claimSafely(() => claim(this.deps.db, free, this.deps.options.leaseMs)) : [];
      if (claimed.length === free && fresh) claimed.push(...(await this.claimExpressLane()));
      times.end = epochMs();
      for (const job of claimed) this.dispatch(job, times);
      if (claimed.length >= free && free > 0) continue;
      if (this.notified && free > claimed.length) continue;
      // stop() may have come while this pass was claiming, when there was no wait to cut short.
      if (!this.running) break;
      polled = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), pollIntervalMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve(false);
        };
      });
      this.wake = undefined;
    }
  }

  private async claimSafely(take: () => Promise<ClaimedJob[]>): Promise<ClaimedJob[]> {
    try {
      return await take();
    } catch (error) {
      this.deps.log.error({ err: error }, 'claiming jobs failed; retrying');
      return [];
    }
  }

  /** Every regular slot is busy: one job of a customer with nothing running, if there is one. */
  private async claimExpressLane(): Promise<ClaimedJob[]> {
    if (this.expressInFlight >= this.deps.options.express) return [];
    return this.claimSafely(async () => {
      const job = await claimExpress(this.deps.db, this.deps.options.leaseMs);
      return job ? [job] : [];
    });
  }

  private dispatch(job: ClaimedJob, claimed: ClaimTimes): void {
    // A customer with nothing else running takes a free express lane even when a slot took it, if
    // the threads are all taken: it starts at once instead of queueing behind the images this
    // worker already holds. (On threads to spare it needs no lane, and a backlog's first image,
    // claimed before its others, does not take the lane newcomers need.)
    const regular = this.inFlight.size - this.expressInFlight;
    if (!job.express && job.alone && job.priority === 'interactive' && regular >= this.deps.pool.threads)
      job.express = this.expressInFlight < this.deps.options.express;
    this.inFlight.set(job.leaseToken, job);
    if (job.express) this.expressInFlight++;
    const task = this.handle(job, claimed).finally(() => {
      this.inFlight.delete(job.leaseToken);
      if (job.express) this.expressInFlight--;
      this.tasks.delete(task);
      this.wake?.();
    });
    this.tasks.add(task);
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
