import { sql } from 'kysely';
import type { Db } from '../catalog/database.ts';
import { utcDay } from '../clock.ts';
import { addToRollups, rollUpProcessorRuns } from './rollups.ts';

export interface Fact {
  imageId: string;
  customerId: string;
  source: string;
  format: string;
  outcome: 'processed' | 'failed';
  errorCode: string | null;
  bytes: number;
  width: number | null;
  height: number | null;
  receivedAt: Date;
  processedAt: Date;
  queueMs: number;
  processingMs: number;
  processors: Record<string, string>;
  /** Scalar outputs of the company's processors, as "processor.field": value, to group by. */
  dimensions: Record<string, string | number | boolean>;
  /** Labels the processors gave the image, for counting by label (unnest). */
  labels: string[];
  /** Each of the company's processors that was run (or skipped) on the image: how it went. */
  processorRuns: ProcessorRuns;
  /** An exact (same bytes) or near duplicate of an earlier image of the customer, counted by day. */
  duplicate?: 'exact' | 'near' | null;
}

/** By processor: the version that ran, how long it took, and its error code when it failed. */
export type ProcessorRuns = Record<string, { version?: string; ms?: number; error?: string }>;

/** The runs of a chain outcome, as facts and the processor rollup keep them. */
export function runsOf(steps: {
  versions: Record<string, string>;
  timings: Record<string, number>;
  errors: Record<string, { code: string; processorCode?: string }>;
}): ProcessorRuns {
  const runs: ProcessorRuns = {};
  for (const name of new Set([...Object.keys(steps.versions), ...Object.keys(steps.errors)])) {
    runs[name] = {
      ...(steps.versions[name] ? { version: steps.versions[name] } : {}),
      ...(steps.timings[name] !== undefined ? { ms: steps.timings[name] } : {}),
      // The processor's own code (TOO_COLOURFUL) says more than the platform's PROCESSOR_FAILED.
      ...(steps.errors[name] ? { error: steps.errors[name].processorCode ?? steps.errors[name].code } : {}),
    };
  }
  return runs;
}

/** The scalar fields of processor outputs, flattened to "processor.field": value. */
export function dimensionsOf(outputs: Record<string, Record<string, unknown>>): Fact['dimensions'] {
  const dims: Fact['dimensions'] = {};
  for (const [processor, output] of Object.entries(outputs)) {
    for (const [field, value] of Object.entries(output ?? {})) {
      if (
        typeof value === 'string' ||
        typeof value === 'boolean' ||
        (typeof value === 'number' && Number.isFinite(value))
      ) {
        dims[`${processor}.${field}`] = typeof value === 'string' ? value.slice(0, 200) : value;
      }
    }
  }
  return dims;
}

/** After a reprocess the fact follows the image, so the statistics group by the new output. */
export async function updateFactOutputs(
  db: Db,
  imageId: string,
  after: { processors: Record<string, string>; dimensions: Fact['dimensions']; labels: string[] },
): Promise<void> {
  await sql`
    update analytics.facts set processors = ${JSON.stringify(after.processors)}, dimensions = ${JSON.stringify(after.dimensions)},
      labels = ${after.labels}
    where image_id = ${imageId}`.execute(db);
}

/** A reprocess's run of its processor, failed or not: on the image's fact, and in the processor rollup. */
export async function addProcessorRuns(
  db: Db,
  image: { id: string; customer_id: string; received_at: Date },
  runs: ProcessorRuns,
): Promise<void> {
  await sql`
    update analytics.facts set processor_runs = processor_runs || ${JSON.stringify(runs)}::jsonb, updated_at = now()
    where image_id = ${image.id}`.execute(db);
  await rollUpProcessorRuns(db, image.received_at, image.customer_id, runs);
}

/**
 * Records one outcome in the analytics schema: the fact, and (rollups.ts) its share of every
 * rollup. Called inside the transaction that records the outcome, which holds the job's lease, so
 * a retry or a second worker never adds it twice. Buckets are by landing time, like the lake's
 * partitions.
 */
export async function recordFact(db: Db, f: Fact): Promise<void> {
  const megapixels = f.width && f.height ? (f.width * f.height) / 1e6 : 0;
  // An image has one fact: a retried image's earlier outcome (failed) is replaced in the same
  // statement, which returns it to be taken back out of the rollups. One round trip for every outcome
  // where a delete (which almost always found nothing) and an insert were two. Both happen at once
  // on the statement's snapshot; the insert's key check does not see the row its delete removed.
  const old = await sql<{
    customer_id: string;
    source: string;
    format: string;
    outcome: 'processed' | 'failed';
    error_code: string | null;
    bytes: string;
    megapixels: number | null;
    received_at: Date;
    processed_at: Date;
    queue_ms: number;
    processing_ms: number;
  }>`
    with old as (
      delete from analytics.facts where image_id = ${f.imageId}
      returning customer_id, source, format, outcome, error_code, bytes, megapixels, received_at, processed_at, queue_ms, processing_ms
    ), added as (
      insert into analytics.facts (image_id, customer_id, source, format, outcome, error_code, bytes, width, height, megapixels,
        received_at, processed_at, day, queue_ms, processing_ms, processors, dimensions, labels, processor_runs)
      values (${f.imageId}, ${f.customerId}, ${f.source}, ${f.format}, ${f.outcome}, ${f.errorCode}, ${f.bytes}, ${f.width}, ${f.height},
        ${megapixels || null}, ${f.receivedAt}, ${f.processedAt}, ${utcDay(f.receivedAt)}, ${f.queueMs}, ${f.processingMs},
        ${JSON.stringify(f.processors)}, ${JSON.stringify(f.dimensions)}, ${f.labels}, ${JSON.stringify(f.processorRuns)})
    )
    select * from old`.execute(db);
  const row = old.rows[0];
  if (row) {
    const earlier: Fact = {
      imageId: f.imageId,
      customerId: row.customer_id,
      source: row.source,
      format: row.format,
      outcome: row.outcome,
      errorCode: row.error_code,
      bytes: Number(row.bytes),
      width: null,
      height: null,
      receivedAt: row.received_at,
      processedAt: row.processed_at,
      queueMs: row.queue_ms,
      processingMs: row.processing_ms,
      processors: {},
      dimensions: {},
      labels: [],
      processorRuns: {},
    };
    await addToRollups(db, earlier, row.megapixels ?? 0, -1);
  }
  // Its share of every rollup, in the same transaction.
  await addToRollups(db, f, megapixels);
}

// ---- Retention and export: the facts of images that go, and the facts of a day ----

/**
 * Deletes the facts of these images (they follow their image; the rollups, which hold no image
 * data, stay). Returns the image ids whose fact was deleted.
 */
export async function deleteForImages(trx: Db, imageIds: string[]): Promise<string[]> {
  const rows = await trx
    .deleteFrom('analytics.facts')
    .where('image_id', 'in', imageIds)
    .returning('image_id')
    .execute();
  return rows.map((r) => r.image_id);
}

/** The landing days ('YYYY-MM-DD') with a fact written or updated after `since`. */
export async function changedDays(db: Db, since: Date): Promise<string[]> {
  const rows = await sql<{
    day: string;
  }>`select distinct day::text as day from analytics.facts where coalesce(updated_at, processed_at) > ${since} order by 1`.execute(
    db,
  );
  return rows.rows.map((r) => r.day);
}

/** Every landing day that has facts. */
export async function factDays(db: Db): Promise<string[]> {
  const rows = await sql<{
    day: string;
  }>`select distinct day::text as day from analytics.facts order by 1`.execute(db);
  return rows.rows.map((r) => r.day);
}

/** One page of a day's facts, in a stable order. */
export async function factsOfDay(
  db: Db,
  day: string,
  offset: number,
  limit: number,
): Promise<Record<string, unknown>[]> {
  const result = await sql<
    Record<string, unknown>
  >`select * from analytics.facts where day = ${day} order by image_id limit ${limit} offset ${offset}`.execute(
    db,
  );
  return result.rows;
}
