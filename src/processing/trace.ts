import type { ClaimedJob } from '../catalog/queue.ts';
import {
  activeContext,
  type Context,
  contextOf,
  failSpan,
  inSpan,
  linkTo,
  recordSpan,
  type SpanError,
  SpanKind,
} from '../observability/tracing.ts';
import type { OutcomeWrite } from './outcome.ts';
import type { StepTime } from './pipeline.ts';
import type { WorkerAnswer } from './worker.ts';

/** When the claim that took a job started and ended (epoch ms). */
export interface ClaimTimes {
  start: number;
  end: number;
}

/**
 * A job's span. Its parent is the span that queued the job (the landing, stored as the job's
 * traceparent), so the image's trace goes on across the queue; the link says the same to tools
 * that draw links, and the wait is an attribute. It starts when the claim did, and the claim
 * (one statement for a batch of jobs) is its first child.
 */
export function inJobSpan<T>(job: ClaimedJob, claimed: ClaimTimes, fn: () => Promise<T>): Promise<T> {
  return inSpan(
    `imagelake.job ${job.kind}`,
    {
      parent: contextOf(job.traceparent),
      kind: SpanKind.CONSUMER,
      links: linkTo(job.traceparent, { 'imagelake.link': 'queued' }),
      startTime: claimed.start,
      attributes: {
        'imagelake.job.id': job.id,
        'imagelake.job.kind': job.kind,
        'imagelake.job.attempt': job.attempts,
        'imagelake.job.priority': job.priority,
        'imagelake.job.express': job.express,
        'imagelake.image.id': job.imageId,
        // Since the job was first queued, so a retried job's wait includes its earlier attempts.
        'imagelake.queue.wait_ms': Math.max(0, Math.round(claimed.end - job.createdAt.getTime())),
      },
    },
    async () => {
      recordSpan('imagelake.claim', activeContext(), claimed);
      return fn();
    },
  );
}

/** The pipeline's steps, timed in the worker thread, as spans under `parent`. */
export function recordSteps(parent: Context, steps: StepTime[] | undefined, failure?: SpanError): void {
  for (const step of steps ?? [])
    recordSpan(
      `imagelake.step ${step.name}`,
      parent,
      step,
      { 'imagelake.step': step.name },
      step.failed ? failure : undefined,
    );
}

/** The built-in steps in the thread pool, as a span with a child per step (timed in the thread). */
export function runPipelineTraced(run: () => Promise<WorkerAnswer>): Promise<WorkerAnswer> {
  return inSpan('imagelake.pipeline', {}, async (span) => {
    const answer = await run();
    const failure = answer.ok ? undefined : { code: answer.code, message: answer.message };
    if (failure) failSpan(span, failure.code, failure.message);
    recordSteps(activeContext(), answer.steps, failure);
    return answer;
  });
}

/** The outcome's transaction, as a span saying which outcome and whether it was recorded. */
export function inOutcomeSpan(
  outcome: 'processed' | 'failed',
  write: () => Promise<OutcomeWrite>,
  code?: string,
): Promise<OutcomeWrite> {
  return inSpan(
    'imagelake.outcome',
    { attributes: { 'imagelake.outcome': outcome, ...(code ? { 'imagelake.error.code': code } : {}) } },
    async (span) => {
      const written = await write();
      span.setAttribute('imagelake.outcome.write', written);
      return written;
    },
  );
}
