import { sql } from 'kysely';
import type { Db } from '../catalog/database.ts';
import { utcDay } from '../clock.ts';
import { bucketOf, LATENCY_BUCKET_COUNT } from './histogram.ts';

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

/**
 * Adds runs to the processor rollup (by landing day, customer, processor, version and outcome),
 * in one statement whatever the number of processors. Called in the transaction that records them.
 */
export async function rollUpProcessorRuns(
  db: Db,
  receivedAt: Date,
  customerId: string,
  runs: ProcessorRuns,
): Promise<void> {
  const entries = Object.entries(runs);
  if (entries.length === 0) return;
  await sql`
    insert into analytics.rollup_processors_daily as r (day, customer_id, processor, version, outcome, runs, ms_sum, latency_hist)
    select ${utcDay(receivedAt)}::date, ${customerId}::uuid, u.processor, u.version, u.outcome, 1, u.ms,
           (select array_agg((i = u.bucket)::int order by i) from generate_series(1, ${LATENCY_BUCKET_COUNT}) i)
    from unnest(${entries.map(([name]) => name)}::text[], ${entries.map(([, r]) => r.version ?? '')}::text[],
                ${entries.map(([, r]) => r.error ?? 'ok')}::text[], ${entries.map(([, r]) => r.ms ?? 0)}::float8[],
                ${entries.map(([, r]) => bucketOf(r.ms ?? 0))}::int[]) as u(processor, version, outcome, ms, bucket)
    on conflict (day, customer_id, processor, version, outcome) do update set
      runs = r.runs + 1,
      ms_sum = r.ms_sum + excluded.ms_sum,
      latency_hist = (select array_agg(a + b order by n)
                      from unnest(r.latency_hist, excluded.latency_hist) with ordinality as h(a, b, n))`.execute(
    db,
  );
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

const hourOf = (d: Date) => new Date(Math.floor(d.getTime() / 3_600_000) * 3_600_000);

/**
 * Records one outcome in the analytics schema: the fact, and its share of the hourly and daily
 * rollups. Called inside the transaction that records the outcome, which holds the job's lease, so
 * a retry or a second worker never adds it twice. Buckets are by landing time, like the lake's
 * partitions.
 */
export async function recordFact(db: Db, f: Fact): Promise<void> {
  const megapixels = f.width && f.height ? (f.width * f.height) / 1e6 : 0;
  await sql`
    insert into analytics.facts (image_id, customer_id, source, format, outcome, error_code, bytes, width, height, megapixels,
      received_at, processed_at, day, queue_ms, processing_ms, processors, dimensions, labels, processor_runs)
    values (${f.imageId}, ${f.customerId}, ${f.source}, ${f.format}, ${f.outcome}, ${f.errorCode}, ${f.bytes}, ${f.width}, ${f.height},
      ${megapixels || null}, ${f.receivedAt}, ${f.processedAt}, ${utcDay(f.receivedAt)}, ${f.queueMs}, ${f.processingMs},
      ${JSON.stringify(f.processors)}, ${JSON.stringify(f.dimensions)}, ${f.labels}, ${JSON.stringify(f.processorRuns)})`.execute(
    db,
  );
  await rollUpProcessorRuns(db, f.receivedAt, f.customerId, f.processorRuns);
  const bucket = bucketOf(f.processingMs);
  for (const [table, column, value] of [
    ['rollup_hourly', 'hour', hourOf(f.receivedAt)],
    ['rollup_daily', 'day', utcDay(f.receivedAt)],
  ] as const) {
    await sql`
      insert into ${sql.table(`analytics.${table}`)} as r (${sql.ref(column)}, customer_id, format, source, outcome, error_code,
        images, bytes, megapixels, queue_ms_sum, processing_ms_sum, latency_hist)
      values (${value}, ${f.customerId}, ${f.format}, ${f.source}, ${f.outcome}, ${f.errorCode ?? ''},
        1, ${f.bytes}, ${megapixels}, ${f.queueMs}, ${f.processingMs},
        (select array_agg(case when i = ${bucket} then 1 else 0 end order by i) from generate_series(1, ${sql.lit(LATENCY_BUCKET_COUNT)}) i))
      on conflict (${sql.ref(column)}, customer_id, format, source, outcome, error_code) do update set
        images = r.images + 1,
        bytes = r.bytes + excluded.bytes,
        megapixels = r.megapixels + excluded.megapixels,
        queue_ms_sum = r.queue_ms_sum + excluded.queue_ms_sum,
        processing_ms_sum = r.processing_ms_sum + excluded.processing_ms_sum,
        latency_hist[${bucket}] = r.latency_hist[${bucket}] + 1`.execute(db);
  }
  // The narrow rollups the dashboard reads most: everyone's totals, and each customer's totals.
  await sql`
    insert into analytics.rollup_daily_totals as r (day, format, source, outcome, error_code, images, bytes, megapixels,
      queue_ms_sum, processing_ms_sum, latency_hist)
    values (${utcDay(f.receivedAt)}, ${f.format}, ${f.source}, ${f.outcome}, ${f.errorCode ?? ''}, 1, ${f.bytes}, ${megapixels},
      ${f.queueMs}, ${f.processingMs}, (select array_agg(case when i = ${bucket} then 1 else 0 end order by i) from generate_series(1, ${sql.lit(LATENCY_BUCKET_COUNT)}) i))
    on conflict (day, format, source, outcome, error_code) do update set
      images = r.images + 1,
      bytes = r.bytes + excluded.bytes,
      megapixels = r.megapixels + excluded.megapixels,
      queue_ms_sum = r.queue_ms_sum + excluded.queue_ms_sum,
      processing_ms_sum = r.processing_ms_sum + excluded.processing_ms_sum,
      latency_hist[${bucket}] = r.latency_hist[${bucket}] + 1`.execute(db);
  // Each customer's totals by day and by month, for the customer rankings.
  for (const [table, column, value] of [
    ['rollup_daily_customers', 'day', utcDay(f.receivedAt)],
    ['rollup_monthly_customers', 'month', `${utcDay(f.receivedAt).slice(0, 7)}-01`],
  ] as const) {
    await sql`
      insert into ${sql.table(`analytics.${table}`)} as r (${sql.ref(column)}, customer_id, images, failed, bytes)
      values (${value}, ${f.customerId}, 1, ${f.outcome === 'failed' ? 1 : 0}, ${f.bytes})
      on conflict (${sql.ref(column)}, customer_id) do update set
        images = r.images + 1, failed = r.failed + excluded.failed, bytes = r.bytes + excluded.bytes`.execute(
      db,
    );
  }
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
