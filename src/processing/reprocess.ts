import { sql } from 'kysely';
import { dimensionsOf, type ProcessorRuns, rollUpProcessorRuns } from '../analytics/facts.ts';
import type { Db } from '../catalog/database.ts';
import { type ClaimedJob, finish, NOTIFY_CHANNEL, REPROCESS_IMAGE } from '../catalog/queue.ts';
import type { ImageRow, Rendition } from '../catalog/schema.ts';
import { type Lake, LakeNotFound } from '../lake/port.ts';
import type { ImageMetadata } from './context.ts';
import type { ChainOutcome } from './processors/chain.ts';
import type { HostInput } from './processors/host.ts';
import type { ProcessorSpec } from './processors/spec.ts';

/**
 * Re-running one processor over the images still in retention, e.g. after a new version. A run is a
 * row with a cursor in landing order; the workers queue its jobs a window at a time (so a run over
 * millions of images never floods the queue uploads share) and count each outcome in the same
 * transaction that records it. A run survives restarts: the cursor says where it was.
 */
export interface ReprocessRequest {
  processor: string;
  customerId?: string;
  since?: Date;
  /** Also re-run images already at the processor's current version. */
  force?: boolean;
}

export type RunRow = Awaited<ReturnType<typeof getRun>>;

export async function getRun(db: Db, id: string) {
  return db.selectFrom('reprocess_runs').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function listRuns(db: Db, limit = 20) {
  return db.selectFrom('reprocess_runs').selectAll().orderBy('created_at', 'desc').limit(limit).execute();
}

/** Starts a run, or returns the one already running with the same scope (re-running resumes it). */
export async function startRun(db: Db, request: ReprocessRequest, now: Date, retentionMs: number) {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext('imagelake.reprocess'))`.execute(trx);
    const existing = await trx
      .selectFrom('reprocess_runs')
      .selectAll()
      .where('status', '=', 'running')
      .where('processor', '=', request.processor)
      .where(sql<boolean>`customer_id is not distinct from ${request.customerId ?? null}`)
      .where(sql<boolean>`since is not distinct from ${request.since ?? null}`)
      .where('force', '=', Boolean(request.force))
      .executeTakeFirst();
    if (existing) return { run: existing, resumed: true };
    const total = await inScope(trx, request, now, retentionMs)
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    const run = await trx
      .insertInto('reprocess_runs')
      .values({
        processor: request.processor,
        customer_id: request.customerId ?? null,
        since: request.since ?? null,
        force: Boolean(request.force),
        status: 'running',
        total: Number(total.n),
        cursor_received_at: null,
        cursor_id: null,
        created_at: now,
        finished_at: null,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { run, resumed: false };
  });
}

export async function cancelRun(db: Db, id: string, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('reprocess_runs')
    .set({ status: 'cancelled', finished_at: now })
    .where('id', '=', id)
    .where('status', '=', 'running')
    .executeTakeFirst();
  await db.deleteFrom('jobs').where('run_id', '=', id).where('state', '=', 'queued').execute();
  return Number(result.numUpdatedRows) === 1;
}

/** Processed images a run covers: within retention, its customer, landed since `since`. */
function inScope(db: Db, request: ReprocessRequest, now: Date, retentionMs: number) {
  let query = db
    .selectFrom('images')
    .where('status', '=', 'processed')
    .where('received_at', '>', new Date(now.getTime() - retentionMs));
  if (request.customerId) query = query.where('customer_id', '=', request.customerId);
  if (request.since) query = query.where('received_at', '>=', request.since);
  return query;
}

/**
 * Queues the next window of each running run's jobs and closes runs that are done. Any worker may
 * call it; a run is topped up by one at a time (SKIP LOCKED), and the cursor moves in the same
 * transaction as the jobs it queued.
 */
export async function topUp(
  db: Db,
  options: { window: number; maxAttempts: number; now: Date; retentionMs: number },
): Promise<number> {
  const runs = await db
    .selectFrom('reprocess_runs')
    .select('id')
    .where('status', '=', 'running')
    .orderBy('created_at')
    .execute();
  let queued = 0;
  for (const { id } of runs) {
    queued += await db.transaction().execute(async (trx) => {
      const run = await trx
        .selectFrom('reprocess_runs')
        .selectAll()
        .where('id', '=', id)
        .where('status', '=', 'running')
        .forUpdate()
        .skipLocked()
        .executeTakeFirst();
      if (!run) return 0;
      const outstanding = await trx
        .selectFrom('jobs')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('run_id', '=', id)
        .executeTakeFirstOrThrow();
      const room = options.window - Number(outstanding.n);
      if (room <= 0) return 0;
      let next = inScope(
        trx,
        { processor: run.processor, customerId: run.customer_id ?? undefined, since: run.since ?? undefined },
        options.now,
        options.retentionMs,
      ).select(['id', 'received_at']);
      if (run.cursor_received_at && run.cursor_id) {
        next = next.where(sql<boolean>`(received_at, id) > (${run.cursor_received_at}, ${run.cursor_id})`);
      }
      const batch = await next.orderBy('received_at').orderBy('id').limit(room).execute();
      if (batch.length === 0) {
        if (Number(outstanding.n) === 0) {
          await trx
            .updateTable('reprocess_runs')
            .set({ status: 'done', finished_at: options.now })
            .where('id', '=', id)
            .execute();
        }
        return 0;
      }
      await trx
        .insertInto('jobs')
        .values(
          batch.map((image) => ({
            kind: REPROCESS_IMAGE,
            image_id: image.id,
            state: 'queued' as const,
            max_attempts: options.maxAttempts,
            run_at: sql<Date>`now()` as never,
            lease_token: null,
            lease_until: null,
            last_error: null,
            processor: run.processor,
            run_id: id,
          })),
        )
        .execute();
      const last = batch.at(-1)!;
      await trx
        .updateTable('reprocess_runs')
        .set({
          cursor_received_at: last.received_at,
          cursor_id: last.id,
          queued: sql<number>`queued + ${batch.length}`,
        })
        .where('id', '=', id)
        .execute();
      await sql`select pg_notify(${NOTIFY_CHANNEL}, ${REPROCESS_IMAGE})`.execute(trx);
      return batch.length;
    });
  }
  return queued;
}

export type ReprocessOutcome = 'updated' | 'skipped' | 'failed';

/** Finishes a reprocess job and counts it on its run; false when the lease was lost. */
export async function finishReprocess(
  db: Db,
  job: ClaimedJob,
  outcome: ReprocessOutcome,
  write?: (trx: Db) => Promise<void>,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    if (!(await finish(trx, job))) return false;
    await write?.(trx);
    if (job.runId) {
      await trx
        .updateTable('reprocess_runs')
        .set({ [outcome]: sql`${sql.ref(outcome)} + 1` } as never)
        .where('id', '=', job.runId)
        .execute();
    }
    return true;
  });
}

/**
 * The image after one processor ran again: its metadata, labels, errors and derived images for that
 * processor replaced, the others kept. The fact row follows, so the statistics group by the new output.
 */
export function reprocessedImage(
  image: ImageRow,
  name: string,
  steps: ChainOutcome,
  derived: Rendition[],
): { metadata: Record<string, unknown>; processors: Record<string, string>; renditions: Rendition[] } {
  const metadata = { ...(image.metadata ?? {}) } as Record<string, unknown>;
  const replace = (key: string, value: unknown) => {
    const map = { ...((metadata[key] ?? {}) as Record<string, unknown>) };
    if (value === undefined) delete map[name];
    else map[name] = value;
    metadata[key] = map;
  };
  replace('processors', steps.outputs[name]);
  replace('labels', steps.labels[name]);
  replace('processorErrors', steps.errors[name]);
  const renditions = (image.renditions ?? []).filter((r) => !r.name.startsWith(`${name}.`)).concat(derived);
  return { metadata, processors: { ...(image.processors ?? {}), [name]: steps.versions[name]! }, renditions };
}

/** The fact follows the image after a reprocess; the run is one more in the processor rollup. */
export async function updateFact(
  db: Db,
  image: Pick<ImageRow, 'id' | 'customer_id' | 'received_at'>,
  metadata: Record<string, unknown>,
  versions: Record<string, string>,
  runs: ProcessorRuns,
) {
  const outputs = (metadata.processors ?? {}) as Record<string, Record<string, unknown>>;
  const labels = [...new Set(Object.values((metadata.labels ?? {}) as Record<string, string[]>).flat())];
  await sql`
    update analytics.facts set processors = ${JSON.stringify(versions)}, dimensions = ${JSON.stringify(dimensionsOf(outputs))},
      labels = ${labels}
    where image_id = ${image.id}`.execute(db);
  await recordRuns(db, image, runs);
}

/** A reprocess's run of its processor, failed or not: on the image's fact, and in the rollup. */
export async function recordRuns(
  db: Db,
  image: Pick<ImageRow, 'id' | 'customer_id' | 'received_at'>,
  runs: ProcessorRuns,
) {
  await sql`
    update analytics.facts set processor_runs = processor_runs || ${JSON.stringify(runs)}::jsonb, updated_at = now()
    where image_id = ${image.id}`.execute(db);
  await rollUpProcessorRuns(db, image.received_at, image.customer_id, runs);
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
  const { processors, labels, processorErrors, ...builtIn } = (image.metadata ?? {}) as Record<
    string,
    unknown
  >;
  const metadata = builtIn as unknown as ImageMetadata;
  if (spec.input !== 'preview') return { original: await original(), metadata };
  const stored = (image.renditions ?? []).find((r) => r.name === 'preview');
  if (!stored) return undefined;
  try {
    return { preview: await lake.getBuffer(stored.key), metadata };
  } catch (error) {
    if (error instanceof LakeNotFound) return undefined;
    throw error;
  }
}
