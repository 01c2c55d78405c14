import {
  addProcessorRuns,
  dimensionsOf,
  type ProcessorRuns,
  runsOf,
  updateFactOutputs,
} from '../../analytics/facts.ts';
import { addProcessorTime } from '../../analytics/usage.ts';
import type { Db } from '../../catalog/database.ts';
import { getImage, setMetadata, setReprocessed } from '../../catalog/images.ts';
import { type ClaimedJob, finish, REPROCESS_IMAGE, retryLater } from '../../catalog/queue.ts';
import { countRunOutcome, getRun, type ReprocessOutcome } from '../../catalog/reprocess-runs.ts';
import type { ImageRow } from '../../catalog/schema.ts';
import { type Lake, LakeNotFound } from '../../lake/port.ts';
import { writeDerived } from '../derived.ts';
import {
  builtInMetadata,
  keyParts,
  labelsOf,
  outputsOf,
  patchSidecar,
  previousOutputs,
  reprocessedImage,
  staleRenditions,
  withProcessorError,
} from '../image-record.ts';
import { isRetryable } from '../processors/chain.ts';
import type { HostInput } from '../processors/host.ts';
import type { ProcessorSpec } from '../processors/spec.ts';
import { topUp } from '../reprocess.ts';
import { runPipelineTraced } from '../trace.ts';
import { type JobContext, type JobHandler, pipelineTask, processorInput, runProcessors } from './context.ts';

/**
 * One image of a reprocess run: runs one processor again on an image already processed, and counts
 * the outcome on its run in the transaction that records it. The run itself (start, cancel, the
 * window of queued jobs) is processing/reprocess.ts.
 */
export interface ReprocessImagePayload {
  imageId: string;
  /** The one processor to run. */
  processor: string;
  runId: string | null;
}

/** A handler per runner: each keeps its own clock for topping up the runs. */
export function reprocessImageJob(): JobHandler<ReprocessImagePayload> {
  let lastTopUp = 0;
  return {
    kind: REPROCESS_IMAGE,
    payload: (job) => ({ imageId: job.imageId, processor: job.processor ?? '', runId: job.runId }),
    handle: reprocessImage,
    /** Keeps reprocess runs fed: a window of their jobs at a time, checked about once a second. */
    async beforeClaim({ db, clock, log, options }) {
      if (Date.now() - lastTopUp < 1000) return;
      lastTopUp = Date.now();
      try {
        await topUp(db, {
          window: options.reprocessWindow,
          maxAttempts: options.maxAttempts,
          now: clock.now(),
          retentionMs: options.retentionMs,
        });
      } catch (error) {
        log.warn({ err: error }, 'queueing reprocess jobs failed; retrying');
      }
    },
  };
}

async function reprocessImage(
  ctx: JobContext,
  job: ClaimedJob,
  payload: ReprocessImagePayload,
): Promise<void> {
  const { db, lake, pool, processors, log, options, clock } = ctx;
  const image = await getImage(db, payload.imageId);
  const name = payload.processor;
  const processor = processors.get(name);
  if (image?.status !== 'processed') {
    await finishReprocess(db, job, 'skipped');
    return;
  }
  if (!processor) {
    log.error({ job: job.id, processor: name }, 'a reprocess job names a processor this worker does not run');
    await finishReprocess(db, job, 'failed');
    return;
  }
  const run = payload.runId ? await getRun(db, payload.runId) : undefined;
  if (run?.status === 'cancelled' || (!run?.force && image.processors?.[name] === processor.version)) {
    await finishReprocess(db, job, 'skipped');
    return;
  }
  // Read once, and only if needed: a service fed the stored preview never needs the original.
  let original: Buffer | undefined;
  const readOriginal = async () => {
    original ??= await lake.getBuffer(image.raw_key);
    return original;
  };
  // Commands and services get what the first processing stored; only a module (decoded pixels)
  // or a missing preview costs the built-in steps again.
  let hostInput = await storedInput(lake, image, readOriginal, processor.spec);
  if (!hostInput) {
    const input = await readOriginal();
    const answer = await runPipelineTraced(() =>
      pool.run(pipelineTask(image, input, options.limits, processor.spec.kind === 'module'), { lane: job }),
    );
    if (!answer.ok) {
      await finishReprocess(db, job, 'failed');
      return;
    }
    hostInput = processorInput(input, answer.result);
  }
  const previous = previousOutputs(image, name);
  const steps = await runProcessors(ctx, image, hostInput, { only: name, previous });
  const error = steps.errors[name];
  if (error) {
    if (job.attempts < job.maxAttempts && isRetryable(error)) {
      await retryLater(db, job, `${error.code}: ${error.message}`);
      return;
    }
    // The earlier output stays: it is still what its recorded version said. The error is noted beside it.
    await finishReprocess(db, job, 'failed', async (trx) => {
      await setMetadata(trx, image.id, withProcessorError(image, name, error));
      await addProcessorRuns(trx, image, runsOf(steps));
      await addProcessorUsage(trx, image, runsOf(steps), clock.now());
    });
    return;
  }
  const parts = keyParts(image);
  const derived = await Promise.all(steps.images.map((i) => writeDerived(lake, parts, i)));
  const next = reprocessedImage(image, name, steps, derived);
  const recorded = await finishReprocess(db, job, 'updated', async (trx) => {
    await setReprocessed(trx, image.id, next);
    // The fact follows the image, so the statistics group by the new output; the run is one more in the processor rollup.
    await updateFactOutputs(trx, image.id, {
      processors: next.processors,
      dimensions: dimensionsOf(outputsOf(next.metadata)),
      labels: labelsOf(next),
    });
    await addProcessorRuns(trx, image, runsOf(steps));
    await addProcessorUsage(trx, image, runsOf(steps), clock.now());
  });
  if (!recorded) return;
  const stale = staleRenditions(image, next);
  if (stale.length) await lake.deleteMany(stale);
  await patchSidecar(lake, parts, next);
}

/** The run's processor time on the customer's usage, on the day it ran. */
async function addProcessorUsage(db: Db, image: ImageRow, runs: ProcessorRuns, at: Date): Promise<void> {
  const processorMs: Record<string, number> = {};
  for (const [name, run] of Object.entries(runs)) if (run.ms !== undefined) processorMs[name] = run.ms;
  await addProcessorTime(db, { customerId: image.customer_id, at, processorMs });
}

/** Finishes a reprocess job and counts it on its run; false when the lease was lost. */
async function finishReprocess(
  db: Db,
  job: ClaimedJob,
  outcome: ReprocessOutcome,
  write?: (trx: Db) => Promise<void>,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    if (!(await finish(trx, job))) return false;
    await write?.(trx);
    if (job.runId) await countRunOutcome(trx, job.runId, outcome);
    return true;
  });
}

/**
 * A processor's input rebuilt from what the first processing stored, without running the built-in
 * steps again: the original, the catalog's metadata and, for `input: "preview"`, the stored preview.
 * Undefined when only the pipeline can make it: a module (it gets the decoded pixels) or a preview
 * that is not in the lake.
 */
export async function storedInput(
  lake: Lake,
  image: ImageRow,
  original: () => Promise<Buffer>,
  spec: ProcessorSpec,
): Promise<HostInput | undefined> {
  if (spec.kind === 'module') return undefined;
  // The catalog keeps the built-in metadata with the processors' results beside it.
  const metadata = builtInMetadata(image);
  if (spec.input !== 'preview') return { original: await original(), metadata };
  const stored = (image.renditions ?? []).find((r) => r.name === 'preview');
  if (!stored) return undefined;
  try {
    return { preview: await lake.getBuffer(stored.key), metadata };
  } catch (error) {
    if (!(error instanceof LakeNotFound)) throw error;
    return undefined;
  }
}
