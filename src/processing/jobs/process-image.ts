import { type ProcessorRuns, runsOf } from '../../analytics/facts.ts';
import { markReceived, startProcessing } from '../../catalog/images.ts';
import { type ClaimedJob, finish, PROCESS_IMAGE, retryLater } from '../../catalog/queue.ts';
import type { ImageRow, Rendition } from '../../catalog/schema.ts';
import { type ErrorCode, PERMANENT_CODES } from '../../errors.ts';
import { type ImageKeyParts, metadataKey, renditionKey } from '../../lake/object-keys.ts';
import { LakeNotFound } from '../../lake/port.ts';
import { activeSpan, failSpan, imageAttributes, inSpan } from '../../observability/tracing.ts';
import type { ProcessResult } from '../context.ts';
import { writeDerived } from '../derived.ts';
import { keyParts, sidecarOf, writeSidecar } from '../image-record.ts';
import { type OutcomeWrite, recordFailed, recordProcessed } from '../outcome.ts';
import { type ChainOutcome, isRetryable } from '../processors/chain.ts';
import { inOutcomeSpan, runPipelineTraced } from '../trace.ts';
import { type JobContext, type JobHandler, pipelineTask, processorInput, runProcessors } from './context.ts';

/**
 * The first processing of a landed image: the built-in steps in the thread pool, then the company's
 * processors, then the outputs to the lake, then the outcome in the catalog. Outputs go to the lake
 * before the catalog, so a crash in between only leaves objects the retry overwrites.
 */
export interface ProcessImagePayload {
  imageId: string;
}

export const processImageJob: JobHandler<ProcessImagePayload> = {
  kind: PROCESS_IMAGE,
  payload: (job) => ({ imageId: job.imageId }),
  handle: processImage,
};

async function processImage(ctx: JobContext, job: ClaimedJob, payload: ProcessImagePayload): Promise<void> {
  const started = performance.now();
  const image = await startProcessing(ctx.db, payload.imageId);
  if (!image) {
    // Gone, or its outcome is recorded already.
    await finish(ctx.db, job);
    return;
  }
  activeSpan().setAttributes(
    imageAttributes({
      id: image.id,
      customerId: image.customer_id,
      source: image.source,
      format: image.format,
      bytes: Number(image.bytes),
    }),
  );
  await process(ctx, job, image, started);
}

async function process(ctx: JobContext, job: ClaimedJob, image: ImageRow, started: number): Promise<void> {
  const { lake, pool, clock, metrics, log, options, processors } = ctx;
  let input: Buffer;
  try {
    input = await lake.getBuffer(image.raw_key);
  } catch (error) {
    if (error instanceof LakeNotFound) {
      return fail(ctx, job, image, started, 'CORRUPT_IMAGE', 'The original is missing from the lake.', true);
    }
    throw error;
  }
  const answer = await runPipelineTraced(() =>
    pool.run(
      pipelineTask(image, input, options.limits, processors.needsDecoded),
      // The processors read the original after the thread is done with it: hand over a copy then.
      { transferInput: processors.list.length === 0, lane: job },
    ),
  );
  if (!answer.ok) return fail(ctx, job, image, started, answer.code, answer.message, false);
  const steps = await runProcessors(ctx, image, processorInput(input, answer.result));
  if (steps.failure) {
    const f = steps.failure;
    const version = steps.versions[f.processor];
    const message = `${f.processor}${version ? `@${version}` : ''}: ${f.processorCode ? `${f.processorCode}: ` : ''}${f.message}`;
    return fail(ctx, job, image, started, f.code, message, !isRetryable(f), runsOf(steps));
  }

  const parts = keyParts(image);
  const renditions = await inSpan('imagelake.write-outputs', {}, () =>
    writeOutputs(ctx, parts, answer.result, steps),
  );
  const processedAt = clock.now();
  const timing = timingOf(image, processedAt, started);
  const write = await inOutcomeSpan('processed', () =>
    recordProcessed(
      ctx.db,
      job,
      image,
      answer.result,
      steps,
      renditions,
      timing,
      { eventsTopic: options.eventsTopic, retentionMs: options.retentionMs },
      options.nearDistance,
    ),
  );
  settle(ctx, write, job, image, renditions.map((r) => r.key).concat(metadataKey(parts)));
  if (write === 'recorded') {
    metrics.processed.inc({ outcome: 'processed', format: image.format });
    metrics.processingSeconds.observe({ outcome: 'processed' }, timing.processingMs / 1000);
    for (const [step, ms] of Object.entries(answer.result.timings))
      metrics.stepSeconds.observe({ step }, ms / 1000);
    if (processors.list.length)
      metrics.stepSeconds.observe(
        { step: 'processors' },
        Object.values(steps.timings).reduce((a, b) => a + b, 0) / 1000,
      );
    log.debug({ image: image.id, ms: timing.processingMs }, 'image processed');
  }
}

async function writeOutputs(
  ctx: JobContext,
  parts: ImageKeyParts,
  result: ProcessResult,
  steps: ChainOutcome,
): Promise<Rendition[]> {
  const { lake } = ctx;
  const renditions = await Promise.all([
    ...result.renditions.map(async (r) => {
      const key = renditionKey(parts, r.name, r.format);
      const bytes = await lake.put(key, Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength), {
        contentType: 'image/webp',
        durable: false,
      });
      return { name: r.name, format: r.format, width: r.width, height: r.height, bytes, key };
    }),
    ...steps.images.map((i) => writeDerived(lake, parts, i)),
  ]);
  await writeSidecar(lake, parts, sidecarOf(parts, result, steps, renditions));
  return renditions;
}

function timingOf(image: ImageRow, processedAt: Date, started: number) {
  return {
    processedAt,
    queueMs: Math.max(
      0,
      Math.round(processedAt.getTime() - image.received_at.getTime() - (performance.now() - started)),
    ),
    processingMs: Math.round(performance.now() - started),
  };
}

async function fail(
  ctx: JobContext,
  job: ClaimedJob,
  image: ImageRow,
  started: number,
  code: ErrorCode,
  message: string,
  permanent: boolean,
  processorRuns: ProcessorRuns = {},
) {
  const { db, metrics, log, clock } = ctx;
  const final = permanent || PERMANENT_CODES.has(code) || job.attempts >= job.maxAttempts;
  // The job's span carries the code whether the image is retried or failed for good.
  failSpan(activeSpan(), code, message);
  activeSpan().setAttribute('imagelake.job.retried', !final);
  metrics.failures.inc({ code, retried: String(!final) });
  if (!final) {
    log.warn({ image: image.id, code, attempt: job.attempts }, 'processing failed; retrying with backoff');
    await retryLater(db, job, `${code}: ${message}`);
    await markReceived(db, image.id);
    return;
  }
  const timing = timingOf(image, clock.now(), started);
  const write = await inOutcomeSpan(
    'failed',
    () =>
      recordFailed(
        db,
        job,
        image,
        { code, message },
        timing,
        { eventsTopic: ctx.options.eventsTopic, retentionMs: ctx.options.retentionMs },
        processorRuns,
      ),
    code,
  );
  settle(ctx, write, job, image, []);
  if (write === 'recorded') {
    metrics.processed.inc({ outcome: 'failed', format: image.format });
    metrics.processingSeconds.observe({ outcome: 'failed' }, timing.processingMs / 1000);
    log.info({ image: image.id, code, message }, 'image failed');
  }
}

/** After a write that did not take, clean up what this attempt put in the lake. */
function settle(
  ctx: JobContext,
  write: OutcomeWrite,
  job: ClaimedJob,
  image: ImageRow,
  written: string[],
): void {
  if (write === 'lease-lost')
    ctx.log.warn(
      { job: job.id, image: image.id },
      'lease lost before recording; the other worker records it',
    );
  // The image was erased while it was being processed: its fresh outputs must not outlive it.
  if (write === 'image-gone' && written.length) void ctx.lake.deleteMany(written).catch(() => {});
}
