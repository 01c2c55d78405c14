import type { Updateable } from 'kysely';
import { dimensionsOf, type ProcessorRuns, recordFact, runsOf } from '../analytics/facts.ts';
import { addOutcome } from '../analytics/usage.ts';
import { duplicatePolicyOf } from '../catalog/customers.ts';
import type { Db } from '../catalog/database.ts';
import { indexHash } from '../catalog/image-hashes.ts';
import { flagDuplicate, imageExists, markOutcome } from '../catalog/images.ts';
import { addOutboxEvent } from '../catalog/outbox.ts';
import { type ClaimedJob, finish } from '../catalog/queue.ts';
import type { ImageRow, ImagesTable, Rendition } from '../catalog/schema.ts';
import { traceparentOf } from '../observability/tracing.ts';
import { announceImage } from '../webhooks/events.ts';
import type { ProcessResult } from './context.ts';
import { failedRecord, flatLabels, processedRecord } from './image-record.ts';
import type { ChainOutcome } from './processors/chain.ts';

export type OutcomeWrite = 'recorded' | 'lease-lost' | 'already-recorded' | 'image-gone';

/**
 * Records a processed image, finishes its job and counts it in the statistics, all in one
 * transaction: either all three happen or none, so a retry or a second worker never counts twice.
 */
function factBase(image: ImageRow, timing: { processedAt: Date; queueMs: number; processingMs: number }) {
  return {
    imageId: image.id,
    customerId: image.customer_id,
    source: image.source,
    format: image.format,
    bytes: Number(image.bytes),
    receivedAt: image.received_at,
    processedAt: timing.processedAt,
    queueMs: timing.queueMs,
    processingMs: timing.processingMs,
  };
}

async function whyNotUpdated(db: Db, id: string): Promise<OutcomeWrite> {
  return (await imageExists(db, id)) ? 'already-recorded' : 'image-gone';
}

/** What downstream systems are told about an outcome (the image.processed / image.failed event). */
export function outcomeEvent(
  image: ImageRow,
  outcome: { processedAt: Date; queueMs: number; processingMs: number },
  result: {
    width?: number;
    height?: number;
    processors?: Record<string, string>;
    error?: { code: string; message: string };
  },
) {
  return {
    type: result.error ? 'image.failed' : 'image.processed',
    id: image.id,
    customerId: image.customer_id,
    source: image.source,
    format: image.format,
    width: result.width ?? null,
    height: result.height ?? null,
    bytes: Number(image.bytes),
    checksum: image.checksum,
    receivedAt: image.received_at.toISOString(),
    processedAt: outcome.processedAt.toISOString(),
    timings: { queueMs: outcome.queueMs, processingMs: outcome.processingMs },
    processors: result.processors ?? {},
    ...(result.error ? { error: result.error } : {}),
  };
}

/** The outcome's share of the customer's usage (usage.ts), in the outcome's transaction. */
async function countUsage(
  db: Db,
  image: ImageRow,
  timing: Timing,
  outcome: 'processed' | 'failed',
  cpuMs: number,
  runs: ProcessorRuns,
): Promise<void> {
  const processorMs: Record<string, number> = {};
  for (const [name, run] of Object.entries(runs)) if (run.ms !== undefined) processorMs[name] = run.ms;
  await addOutcome(db, {
    customerId: image.customer_id,
    processedAt: timing.processedAt,
    outcome,
    processingMs: timing.processingMs,
    cpuMs,
    processorMs,
  });
}

/** Where an outcome is told: the Kafka events topic (if any) and the customer's webhooks. */
export interface Announce {
  eventsTopic?: string | undefined;
  /** The platform's retention window: webhooks show when the image expires. */
  retentionMs: number;
}

async function announce(
  db: Db,
  to: Announce,
  event: ReturnType<typeof outcomeEvent>,
  at: Date,
): Promise<void> {
  // The outcome span's context goes with the event: its publish span continues the image's trace.
  if (to.eventsTopic)
    await addOutboxEvent(db, {
      topic: to.eventsTopic,
      key: event.id,
      payload: event,
      createdAt: at,
      traceparent: traceparentOf(),
    });
  // The image as updated above, in this transaction.
  await announceImage(
    db,
    event.type as 'image.processed' | 'image.failed',
    { id: event.id, customerId: event.customerId },
    at,
    to.retentionMs,
  );
}

type Timing = { processedAt: Date; queueMs: number; processingMs: number };

/**
 * The one transaction behind every outcome: finish the job (only while this worker holds its lease),
 * update the image (only if no outcome was recorded yet), then the analytics and the event. Either all
 * of it happens or none, so a retry or a second worker never counts an image twice.
 */
async function recordOutcome(
  db: Db,
  job: ClaimedJob,
  image: ImageRow,
  update: Updateable<ImagesTable>,
  after: (trx: Db) => Promise<void>,
): Promise<OutcomeWrite> {
  return db.transaction().execute(async (trx) => {
    if (!(await finish(trx, job))) return 'lease-lost';
    if (!(await markOutcome(trx, image.id, update))) return whyNotUpdated(trx, image.id);
    await after(trx);
    return 'recorded';
  });
}

/**
 * Adds the image to the similarity index with what it matched among the customer's earlier images
 * (the same bytes; the nearest other within `nearDistance`), and marks it when the customer's policy
 * is "flag" and it matched. Returns which kind of duplicate it is, for the daily counts.
 */
async function indexFingerprints(
  trx: Db,
  image: ImageRow,
  fingerprints: ProcessResult['fingerprints'],
  nearDistance: number,
): Promise<'exact' | 'near' | null> {
  const matches = await indexHash(trx, {
    customerId: image.customer_id,
    imageId: image.id,
    ...fingerprints,
    landedAt: image.received_at,
    maxDistance: nearDistance,
  });
  const duplicate = matches.exactOf ? 'exact' : matches.nearOf ? 'near' : null;
  if (duplicate && (await duplicatePolicyOf(trx, image.customer_id)) === 'flag')
    await flagDuplicate(trx, image.id);
  return duplicate;
}

export async function recordProcessed(
  db: Db,
  job: ClaimedJob,
  image: ImageRow,
  result: ProcessResult,
  steps: Pick<ChainOutcome, 'outputs' | 'labels' | 'versions' | 'errors' | 'timings'>,
  renditions: Rendition[],
  timing: Timing,
  to: Announce,
  /** How far apart two perceptual hashes may be for a near duplicate (IMAGELAKE_NEAR_DISTANCE). */
  nearDistance: number,
): Promise<OutcomeWrite> {
  const { width, height } = result.metadata;
  const labels = flatLabels(steps.labels);
  return recordOutcome(db, job, image, processedRecord(result, steps, renditions, timing), async (trx) => {
    const duplicate = await indexFingerprints(trx, image, result.fingerprints, nearDistance);
    const processors = steps.versions;
    const processorRuns = runsOf(steps);
    await announce(trx, to, outcomeEvent(image, timing, { width, height, processors }), timing.processedAt);
    // The counters last: their rows are held until the commit.
    await recordFact(trx, {
      ...factBase(image, timing),
      outcome: 'processed',
      errorCode: null,
      width,
      height,
      processors,
      dimensions: dimensionsOf(steps.outputs),
      labels,
      processorRuns,
      duplicate,
    });
    await countUsage(trx, image, timing, 'processed', result.cpuMs ?? 0, processorRuns);
  });
}

export async function recordFailed(
  db: Db,
  job: ClaimedJob,
  image: ImageRow,
  error: { code: string; message: string },
  timing: Timing,
  to: Announce,
  /** The processors' runs, when a required one failed the image. */
  processorRuns: ProcessorRuns = {},
): Promise<OutcomeWrite> {
  return recordOutcome(db, job, image, failedRecord(error, timing), async (trx) => {
    await announce(trx, to, outcomeEvent(image, timing, { error }), timing.processedAt);
    // The counters last: their rows are held until the commit.
    await recordFact(trx, {
      ...factBase(image, timing),
      outcome: 'failed',
      errorCode: error.code,
      width: null,
      height: null,
      processors: {},
      dimensions: {},
      labels: [],
      processorRuns,
      duplicate: null,
    });
    await countUsage(trx, image, timing, 'failed', 0, processorRuns);
  });
}
