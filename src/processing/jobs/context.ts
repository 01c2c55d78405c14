import type { Logger } from 'pino';
import type { Db } from '../../catalog/database.ts';
import type { ClaimedJob, JobKind } from '../../catalog/queue.ts';
import type { ImageRow } from '../../catalog/schema.ts';
import type { Clock } from '../../clock.ts';
import type { Lake } from '../../lake/port.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { ProcessResult } from '../context.ts';
import type { ProcessingPool } from '../pool.ts';
import type { ChainOutcome, Processors } from '../processors/chain.ts';
import type { HostInput } from '../processors/host.ts';

/** What a job's handler works with: the worker's catalog, lake, thread pool and processors. */
export interface JobContext {
  db: Db;
  lake: Lake;
  pool: ProcessingPool;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** The company's processors, started and checked (processors/chain.ts). */
  processors: Processors;
  options: {
    concurrency: number;
    /** Jobs the express lane may hold beside `concurrency` (catalog/queue.ts claimExpress). */
    express: number;
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
    /** Near-duplicates are within this many bits (IMAGELAKE_NEAR_DISTANCE). */
    nearDistance: number;
  };
}

/**
 * One kind of job: its payload, read from the claimed row, and the work it does. The runner claims,
 * leases and backs off; the handler finishes the job (queue.finish) or puts it back (queue.retryLater).
 * A handler that throws has its job retried with backoff.
 */
export interface JobHandler<P = unknown> {
  kind: JobKind;
  payload(job: ClaimedJob): P;
  handle(ctx: JobContext, job: ClaimedJob, payload: P): Promise<void>;
  /** Work of the kind's own, done before each claim (reprocess runs top up their window). */
  beforeClaim?(ctx: JobContext): Promise<void>;
}

/** What the built-in steps hand the company's processors: the original, the preview, the pixels. */
export function processorInput(original: Buffer, result: ProcessResult): HostInput {
  const preview = result.renditions.find((r) => r.name === 'preview')?.data;
  return {
    original,
    preview: preview && Buffer.from(preview.buffer, preview.byteOffset, preview.byteLength),
    decoded: result.decoded,
    metadata: result.metadata,
  };
}

/** The built-in steps' task for an image of the catalog. */
export function pipelineTask(
  image: ImageRow,
  input: Buffer,
  limits: JobContext['options']['limits'],
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

/** The company's processors, after the built-in steps; their hosts live on this thread. */
export async function runProcessors(
  ctx: JobContext,
  image: ImageRow,
  input: HostInput,
  options: Parameters<Processors['run']>[2] = {},
): Promise<ChainOutcome> {
  return ctx.processors.run(
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
