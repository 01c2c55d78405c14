import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * The `purge_runs` table and each run's `purge_ledger` lines: the only SQL on them. What a run
 * is and how it is resumed is told in retention/runs.ts.
 */
export interface LedgerItem {
  kind: string;
  key: string | null;
  subjectHash: string | null;
  bytes: number;
  done?: boolean;
}

export async function insertRun(
  db: Db,
  run: {
    id: string;
    kind: 'retention' | 'erasure';
    scope: Record<string, unknown>;
    startedAt: Date;
    windowMs: number | null;
    /** What holds kept back, let go or were overridden, for the receipt (undefined: none involved). */
    holds?: unknown;
  },
): Promise<void> {
  await db
    .insertInto('purge_runs')
    .values({
      id: run.id,
      kind: run.kind,
      scope: JSON.stringify(run.scope),
      started_at: run.startedAt,
      window_ms: run.windowMs,
      sealed_at: null,
      holds: run.holds === undefined ? null : JSON.stringify(run.holds),
    })
    .execute();
}

/**
 * Records ledger lines, 5000 to a statement: each column goes as one array parameter and unnest
 * makes the rows, so a purge of millions of copies costs a statement per 5000 and no per-row
 * parameters to parse.
 */
export async function recordLedger(db: Db, runId: string, items: LedgerItem[]): Promise<void> {
  for (let i = 0; i < items.length; i += 5000) {
    const page = items.slice(i, i + 5000);
    await sql`
      insert into purge_ledger (run_id, kind, key, subject_hash, bytes, done)
      select ${runId}::uuid, t.* from unnest(
        ${page.map((item) => item.kind)}::text[],
        ${page.map((item) => item.key)}::text[],
        ${page.map((item) => item.subjectHash)}::text[],
        ${page.map((item) => item.bytes)}::bigint[],
        ${page.map((item) => item.done ?? false)}::boolean[]) t`.execute(db);
  }
}

/** Says the run is alive, so no other process takes it over as abandoned. */
export async function heartbeat(db: Db, runId: string): Promise<void> {
  await db
    .updateTable('purge_runs')
    .set({ heartbeat_at: sql<Date>`now()` as never })
    .where('id', '=', runId)
    .execute();
}

/** Ledger lines still to delete, oldest first. */
export async function pendingLines(db: Db, runId: string, limit: number) {
  return db
    .selectFrom('purge_ledger')
    .select(['id', 'key'])
    .where('run_id', '=', runId)
    .where('done', '=', false)
    .orderBy('id')
    .limit(limit)
    .execute();
}

export async function markDone(db: Db, lineIds: string[]): Promise<void> {
  await db.updateTable('purge_ledger').set({ done: true }).where('id', 'in', lineIds).execute();
}

/** The run's row, locked until the transaction ends. */
export async function lockRun(trx: Db, runId: string) {
  return trx
    .selectFrom('purge_runs')
    .selectAll()
    .where('id', '=', runId)
    .forUpdate()
    .executeTakeFirstOrThrow();
}

/** The run's ledger summed by kind of copy. */
export async function ledgerTotals(db: Db, runId: string) {
  return db
    .selectFrom('purge_ledger')
    .select([
      'kind',
      (eb) => eb.fn.countAll<string>().as('count'),
      (eb) => eb.fn.sum<string>('bytes').as('bytes'),
    ])
    .where('run_id', '=', runId)
    .groupBy('kind')
    .execute();
}

/** The distinct subject hashes of the run's ledger, sorted. */
export async function ledgerSubjects(db: Db, runId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('purge_ledger')
    .select('subject_hash')
    .distinct()
    .where('run_id', '=', runId)
    .where('subject_hash', 'is not', null)
    .orderBy('subject_hash')
    .execute();
  return rows.map((s) => s.subject_hash!);
}

/** Seals the run and drops its ledger lines (the receipt now holds the totals and the subjects). */
export async function sealAndClearLedger(trx: Db, runId: string, sealedAt: Date): Promise<void> {
  await trx.updateTable('purge_runs').set({ sealed_at: sealedAt }).where('id', '=', runId).execute();
  await trx.deleteFrom('purge_ledger').where('run_id', '=', runId).execute();
}

/** Open runs to resume: every retention run, and erasures whose heartbeat is older than staleMs. */
export async function runsToResume(db: Db, staleMs: number) {
  return db
    .selectFrom('purge_runs')
    .select(['id', 'kind'])
    .where('sealed_at', 'is', null)
    .where((eb) =>
      eb.or([
        eb('kind', '=', 'retention'),
        eb('heartbeat_at', '<', sql<Date>`now() - ${staleMs} * interval '1 millisecond'`),
      ]),
    )
    .orderBy('started_at')
    .execute();
}

/** Open runs whose heartbeat stopped over two minutes ago (the audit's "unfinished run"). */
export async function unfinishedRuns(db: Db) {
  return db
    .selectFrom('purge_runs')
    .select(['id', 'kind', 'started_at'])
    .where('sealed_at', 'is', null)
    .where('heartbeat_at', '<', sql<Date>`now() - interval '2 minutes'`)
    .execute();
}

/** Sealed runs that have no receipt: a receipt was removed. */
export async function sealedRunsWithoutReceipt(db: Db): Promise<Array<{ id: string }>> {
  return db
    .selectFrom('purge_runs')
    .leftJoin('purge_receipts', 'purge_receipts.run_id', 'purge_runs.id')
    .select(['purge_runs.id'])
    .where('purge_runs.sealed_at', 'is not', null)
    .where('purge_receipts.seq', 'is', null)
    .execute();
}
