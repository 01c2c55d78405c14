import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * The reprocess_runs table's owner. A run is a row with a cursor in landing order and its counts;
 * the workflow that drives it is processing/reprocess.ts.
 */
export interface RunScope {
  processor: string;
  customerId?: string;
  since?: Date;
  force?: boolean;
}

export type RunRow = Awaited<ReturnType<typeof getRun>>;

export async function getRun(db: Db, id: string) {
  return db.selectFrom('reprocess_runs').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function listRuns(db: Db, limit = 20) {
  return db.selectFrom('reprocess_runs').selectAll().orderBy('created_at', 'desc').limit(limit).execute();
}

/** Serialises starting runs until the transaction ends, so two requests never start the same run twice. */
export async function lockRunStarts(trx: Db): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('imagelake.reprocess'))`.execute(trx);
}

/** The run already going with exactly this scope, if any. */
export async function findRunningRun(db: Db, scope: RunScope) {
  return db
    .selectFrom('reprocess_runs')
    .selectAll()
    .where('status', '=', 'running')
    .where('processor', '=', scope.processor)
    .where(sql<boolean>`customer_id is not distinct from ${scope.customerId ?? null}`)
    .where(sql<boolean>`since is not distinct from ${scope.since ?? null}`)
    .where('force', '=', Boolean(scope.force))
    .executeTakeFirst();
}

export async function insertRun(db: Db, scope: RunScope, total: number, now: Date) {
  return db
    .insertInto('reprocess_runs')
    .values({
      processor: scope.processor,
      customer_id: scope.customerId ?? null,
      since: scope.since ?? null,
      force: Boolean(scope.force),
      status: 'running',
      total,
      cursor_received_at: null,
      cursor_id: null,
      created_at: now,
      finished_at: null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Cancels a running run; false when it was not running. */
export async function markRunCancelled(db: Db, id: string, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('reprocess_runs')
    .set({ status: 'cancelled', finished_at: now })
    .where('id', '=', id)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function runningRunIds(db: Db): Promise<string[]> {
  const runs = await db
    .selectFrom('reprocess_runs')
    .select('id')
    .where('status', '=', 'running')
    .orderBy('created_at')
    .execute();
  return runs.map((r) => r.id);
}

/** Locks a running run for topping up; undefined when another worker holds it (SKIP LOCKED) or it stopped. */
export async function lockRunningRun(trx: Db, id: string) {
  return trx
    .selectFrom('reprocess_runs')
    .selectAll()
    .where('id', '=', id)
    .where('status', '=', 'running')
    .forUpdate()
    .skipLocked()
    .executeTakeFirst();
}

export async function markRunDone(db: Db, id: string, now: Date): Promise<void> {
  await db
    .updateTable('reprocess_runs')
    .set({ status: 'done', finished_at: now })
    .where('id', '=', id)
    .execute();
}

/** Moves a run's cursor past the images it just queued jobs for. */
export async function advanceRunCursor(
  db: Db,
  id: string,
  last: { received_at: Date; id: string },
  queued: number,
): Promise<void> {
  await db
    .updateTable('reprocess_runs')
    .set({
      cursor_received_at: last.received_at,
      cursor_id: last.id,
      queued: sql<number>`queued + ${queued}`,
    })
    .where('id', '=', id)
    .execute();
}

export type ReprocessOutcome = 'updated' | 'skipped' | 'failed';

/** Counts one job's outcome on its run. */
export async function countRunOutcome(db: Db, id: string, outcome: ReprocessOutcome): Promise<void> {
  await db
    .updateTable('reprocess_runs')
    .set({ [outcome]: sql`${sql.ref(outcome)} + 1` } as never)
    .where('id', '=', id)
    .execute();
}
