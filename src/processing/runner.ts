import type { Logger } from 'pino';
import { type ProcessorRuns, runsOf } from '../analytics/facts.ts';
import type { Db } from '../catalog/database.ts';
import { getImage } from '../catalog/images.ts';
import {
  type ClaimedJob,
  claim,
  finish,
  REPROCESS_IMAGE,
  renewLeases,
  retryLater,
} from '../catalog/queue.ts';
import type { ImageRow, Rendition } from '../catalog/schema.ts';
import type { Clock } from '../clock.ts';
import { type ErrorCode, PERMANENT_CODES } from '../errors.ts';
import { metadataKey, renditionKey } from '../lake/object-keys.ts';
import { type Lake, LakeNotFound } from '../lake/port.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ProcessResult } from './context.ts';
import { writeDerived } from './derived.ts';
import { type OutcomeWrite, recordFailed, recordProcessed } from './outcome.ts';
import type { ProcessingPool } from './pool.ts';
import { type ChainOutcome, isRetryable, type Processors } from './processors/chain.ts';
import type { HostInput } from './processors/host.ts';
import {
  finishReprocess,
  getRun,
  recordRuns,
  reprocessedImage,
  storedInput,
  topUp,
  updateFact,
} from './reprocess.ts';

export interface RunnerDeps {
  db: Db;
  lake: Lake;
  pool: ProcessingPool;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** The company's processors, started and checked (processors/chain.ts). */
  processors: Processors;
  /** Wakes the runner when a job is queued (PostgreSQL LISTEN); polling covers a missed wake-up. */
  subscribe?: (wake: () => void) => void;
  options: {
    concurrency: number;
    leaseMs: number;
    pollIntervalMs: number;
    limits: { maxPixels: number; maxFrames: number };
    /** Kafka topic for image.processed / image.failed events, written to the outbox with each outcome. */
    eventsTopic?: string;
    /** Reprocess runs cover images younger than this. */
    retentionMs: number;
    maxAttempts: number;
    /** Jobs a reprocess run keeps queued at most. */
    reprocessWindow: number;
  };
}

/**
 * The `worker` role: claims processing jobs, runs them in the thread pool, writes the outputs to
 * the lake, then records the outcome. Outputs go to the lake before the catalog, so a crash in
 * between only leaves objects the retry overwrites.
 */
export class Runner {
  private readonly deps: RunnerDeps;
  private readonly inFlight = new Map<string, ClaimedJob>();
  private running = false;
  private wake: (() => void) | undefined;
  /** A job notice came while the loop was busy claiming: claim again instead of waiting a poll interval. */
  private notified = false;
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly tasks = new Set<Promise<void>>();

  constructor(deps: RunnerDeps) {
    this.deps = deps;
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

  private lastTopUp = 0;

  /** Keeps reprocess runs fed: a window of their jobs at a time, checked about once a second. */
  private async feedReprocessRuns(): Promise<void> {
    if (Date.now() - this.lastTopUp < 1000) return;
    this.lastTopUp = Date.now();
    const { options, db, clock, log } = this.deps;
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
  }

  private async run(): Promise<void> {
    const { concurrency, pollIntervalMs, leaseMs } = this.deps.options;
    while (this.running) {
      this.notified = false;
      await this.feedReprocessRuns();
      const free = concurrency - this.inFlight.size;
      let claimed: ClaimedJob[] = [];
      if (free > 0) {
        try {
          claimed = await claim(this.deps.db, free, leaseMs);
        } catch (error) {
          this.deps.log.error({ err: error }, 'claiming jobs failed; retrying');
        }
      }
      for (const job of claimed) {
        this.inFlight.set(job.leaseToken, job);
        const task = this.handle(job).finally(() => {
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

  private async handle(job: ClaimedJob): Promise<void> {
    const { db, log } = this.deps;
    const started = performance.now();
    try {
      const image = await getImage(db, job.imageId);
      if (job.kind === REPROCESS_IMAGE) {
        await this.reprocess(job, image);
        return;
      }
      if (!image || image.status === 'processed' || image.status === 'failed') {
        await finish(db, job);
        return;
      }
      await db
        .updateTable('images')
        .set({ status: 'processing' })
        .where('id', '=', image.id)
        .where('status', '=', 'received')
        .execute();
      await this.process(job, image, started);
    } catch (error) {
      log.error(
        { err: error, job: job.id, image: job.imageId },
        'processing job failed unexpectedly; it will be retried',
      );
      await retryLater(db, job, String((error as Error)?.message ?? error)).catch(() => {});
    }
  }

  private async process(job: ClaimedJob, image: ImageRow, started: number): Promise<void> {
    const { lake, pool, clock, metrics, log, options, processors } = this.deps;
    let input: Buffer;
    try {
      input = await lake.getBuffer(image.raw_key);
    } catch (error) {
      if (error instanceof LakeNotFound) {
        return this.fail(
          job,
          image,
          started,
          'CORRUPT_IMAGE',
          'The original is missing from the lake.',
          true,
        );
      }
      throw error;
    }
    const answer = await pool.run(
      pipelineTask(image, input, options.limits, processors.needsDecoded),
      // The processors read the original after the thread is done with it: hand over a copy then.
      { transferInput: processors.list.length === 0 },
    );
    if (!answer.ok) return this.fail(job, image, started, answer.code, answer.message, false);
    const steps = await this.runProcessors(image, processorInput(input, answer.result));
    if (steps.failure) {
      const f = steps.failure;
      const version = steps.versions[f.processor];
      const message = `${f.processor}${version ? `@${version}` : ''}: ${f.processorCode ? `${f.processorCode}: ` : ''}${f.message}`;
      return this.fail(job, image, started, f.code, message, !isRetryable(f), runsOf(steps));
    }

    const parts = { imageId: image.id, customerId: image.customer_id, receivedAt: image.received_at };
    const renditions = await this.writeOutputs(parts, answer.result, steps);
    const processedAt = clock.now();
    const timing = this.timing(job, image, processedAt, started);
    const write = await recordProcessed(
      this.deps.db,
      job,
      image,
      answer.result,
      steps,
      renditions,
      timing,
      options.eventsTopic,
    );
    this.settle(write, job, image, renditions.map((r) => r.key).concat(metadataKey(parts)));
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

  /** The company's processors, after the built-in steps; their hosts live on this thread. */
  private async runProcessors(
    image: ImageRow,
    input: HostInput,
    options: Parameters<Processors['run']>[2] = {},
  ): Promise<ChainOutcome> {
    return this.deps.processors.run(
      {
        id: image.id,
        customerId: image.customer_id,
        source: image.source,
        format: image.format,
        metadata: input.metadata,
      },
      input,
      options,
    );
  }

  private async writeOutputs(
    parts: { imageId: string; customerId: string; receivedAt: Date },
    result: ProcessResult,
    steps: ChainOutcome,
  ): Promise<Rendition[]> {
    const { lake } = this.deps;
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
    // The sidecar makes the lake self-describing: readers of the lake alone get the metadata too.
    const sidecar = {
      id: parts.imageId,
      customerId: parts.customerId,
      receivedAt: parts.receivedAt.toISOString(),
      metadata: result.metadata,
      fingerprints: result.fingerprints,
      processors: {
        versions: steps.versions,
        outputs: steps.outputs,
        labels: steps.labels,
        errors: steps.errors,
      },
      renditions: renditions.map(({ key, ...rest }) => ({ ...rest, key })),
    };
    await lake.put(metadataKey(parts), Buffer.from(JSON.stringify(sidecar, null, 2)), {
      contentType: 'application/json',
      durable: false,
    });
    return renditions;
  }

  /** Runs one processor again on an image already processed (a reprocess run's job). */
  private async reprocess(job: ClaimedJob, image: ImageRow | undefined): Promise<void> {
    const { db, lake, pool, processors, log, options } = this.deps;
    const name = job.processor ?? '';
    const processor = processors.get(name);
    if (image?.status !== 'processed') {
      await finishReprocess(db, job, 'skipped');
      return;
    }
    if (!processor) {
      log.error(
        { job: job.id, processor: name },
        'a reprocess job names a processor this worker does not run',
      );
      await finishReprocess(db, job, 'failed');
      return;
    }
    const run = job.runId ? await getRun(db, job.runId) : undefined;
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
      const answer = await pool.run(
        pipelineTask(image, input, options.limits, processor.spec.kind === 'module'),
      );
      if (!answer.ok) {
        await finishReprocess(db, job, 'failed');
        return;
      }
      hostInput = processorInput(input, answer.result);
    }
    const previous = { ...((image.metadata?.processors ?? {}) as Record<string, Record<string, unknown>>) };
    delete previous[name];
    const steps = await this.runProcessors(image, hostInput, { only: name, previous });
    const error = steps.errors[name];
    if (error) {
      if (job.attempts < job.maxAttempts && isRetryable(error)) {
        await retryLater(db, job, `${error.code}: ${error.message}`);
        return;
      }
      // The earlier output stays: it is still what its recorded version said. The error is noted beside it.
      await finishReprocess(db, job, 'failed', async (trx) => {
        const metadata = { ...(image.metadata ?? {}) } as Record<string, unknown>;
        metadata.processorErrors = { ...((metadata.processorErrors ?? {}) as object), [name]: error };
        await trx
          .updateTable('images')
          .set({ metadata: JSON.stringify(metadata) })
          .where('id', '=', image.id)
          .execute();
        await recordRuns(trx, image, runsOf(steps));
      });
      return;
    }
    const parts = { imageId: image.id, customerId: image.customer_id, receivedAt: image.received_at };
    const derived = await Promise.all(steps.images.map((i) => writeDerived(lake, parts, i)));
    const next = reprocessedImage(image, name, steps, derived);
    const recorded = await finishReprocess(db, job, 'updated', async (trx) => {
      await trx
        .updateTable('images')
        .set({
          metadata: JSON.stringify(next.metadata),
          processors: JSON.stringify(next.processors),
          renditions: JSON.stringify(next.renditions),
        })
        .where('id', '=', image.id)
        .execute();
      await updateFact(trx, image, next.metadata, next.processors, runsOf(steps));
    });
    if (!recorded) return;
    const kept = new Set(next.renditions.map((r) => r.key));
    const stale = (image.renditions ?? []).filter((r) => !kept.has(r.key)).map((r) => r.key);
    if (stale.length) await lake.deleteMany(stale);
    await this.patchSidecar(parts, next);
  }

  /** Keeps the lake's sidecar in step with the catalog after a reprocess. */
  private async patchSidecar(
    parts: { imageId: string; customerId: string; receivedAt: Date },
    next: ReturnType<typeof reprocessedImage>,
  ): Promise<void> {
    const key = metadataKey(parts);
    try {
      const sidecar = JSON.parse((await this.deps.lake.getBuffer(key)).toString('utf8'));
      sidecar.processors = {
        versions: next.processors,
        outputs: next.metadata.processors,
        labels: next.metadata.labels,
        errors: next.metadata.processorErrors,
      };
      sidecar.renditions = next.renditions;
      await this.deps.lake.put(key, Buffer.from(JSON.stringify(sidecar, null, 2)), {
        contentType: 'application/json',
        durable: false,
      });
    } catch (error) {
      if (!(error instanceof LakeNotFound)) throw error;
    }
  }

  private timing(_job: ClaimedJob, image: ImageRow, processedAt: Date, started: number) {
    return {
      processedAt,
      queueMs: Math.max(
        0,
        Math.round(processedAt.getTime() - image.received_at.getTime() - (performance.now() - started)),
      ),
      processingMs: Math.round(performance.now() - started),
    };
  }

  private async fail(
    job: ClaimedJob,
    image: ImageRow,
    started: number,
    code: ErrorCode,
    message: string,
    permanent: boolean,
    processorRuns: ProcessorRuns = {},
  ) {
    const { db, metrics, log, clock } = this.deps;
    const final = permanent || PERMANENT_CODES.has(code) || job.attempts >= job.maxAttempts;
    metrics.failures.inc({ code, retried: String(!final) });
    if (!final) {
      log.warn({ image: image.id, code, attempt: job.attempts }, 'processing failed; retrying with backoff');
      await retryLater(db, job, `${code}: ${message}`);
      await db
        .updateTable('images')
        .set({ status: 'received' })
        .where('id', '=', image.id)
        .where('status', '=', 'processing')
        .execute();
      return;
    }
    const timing = this.timing(job, image, clock.now(), started);
    const write = await recordFailed(
      db,
      job,
      image,
      { code, message },
      timing,
      this.deps.options.eventsTopic,
      processorRuns,
    );
    this.settle(write, job, image, []);
    if (write === 'recorded') {
      metrics.processed.inc({ outcome: 'failed', format: image.format });
      metrics.processingSeconds.observe({ outcome: 'failed' }, timing.processingMs / 1000);
      log.info({ image: image.id, code, message }, 'image failed');
    }
  }

  /** After a write that did not take, clean up what this attempt put in the lake. */
  private settle(write: OutcomeWrite, job: ClaimedJob, image: ImageRow, written: string[]): void {
    if (write === 'lease-lost')
      this.deps.log.warn(
        { job: job.id, image: image.id },
        'lease lost before recording; the other worker records it',
      );
    // The image was erased while it was being processed: its fresh outputs must not outlive it.
    if (write === 'image-gone' && written.length) void this.deps.lake.deleteMany(written).catch(() => {});
  }
}

/** What the built-in steps hand the company's processors: the original, the preview, the pixels. */
function processorInput(original: Buffer, result: ProcessResult): HostInput {
  const preview = result.renditions.find((r) => r.name === 'preview')?.data;
  return {
    original,
    preview: preview && Buffer.from(preview.buffer, preview.byteOffset, preview.byteLength),
    decoded: result.decoded,
    metadata: result.metadata,
  };
}

/** The built-in steps' task for an image of the catalog. */
function pipelineTask(
  image: ImageRow,
  input: Buffer,
  limits: RunnerDeps['options']['limits'],
  keepDecoded: boolean,
): Parameters<ProcessingPool['run']>[0] {
  return {
    imageId: image.id,
    customerId: image.customer_id,
    source: image.source,
    format: image.format,
    checksum: image.checksum,
    input,
    limits,
    keepDecoded,
  };
}
