import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * The `purge_receipts` table: append-only (a trigger refuses UPDATE and DELETE). Hashing and
 * verifying the chain is retention/receipts.ts's; this module only reads and appends rows.
 */
export interface ReceiptRow {
  seq: string;
  body: unknown;
  prev_hash: string;
  hash: string;
}

// Serializes appends, so two runs sealing at once cannot both chain onto the same receipt.
const CHAIN_LOCK = 0x1a6e2b;

/** Takes the chain's lock until the caller's transaction ends. */
export async function lockChain(trx: Db): Promise<void> {
  await sql`select pg_advisory_xact_lock(${CHAIN_LOCK})`.execute(trx);
}

/** The hash of the newest receipt, if any. */
export async function lastHash(trx: Db): Promise<string | undefined> {
  const last = await trx
    .selectFrom('purge_receipts')
    .select('hash')
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  return last?.hash;
}

/** Appends a receipt; returns its seq. */
export async function insertReceipt(
  trx: Db,
  receipt: { runId: string; body: unknown; prevHash: string; hash: string },
): Promise<number> {
  const row = await trx
    .insertInto('purge_receipts')
    .values({
      run_id: receipt.runId,
      body: JSON.stringify(receipt.body),
      prev_hash: receipt.prevHash,
      hash: receipt.hash,
    })
    .returning('seq')
    .executeTakeFirstOrThrow();
  return Number(row.seq);
}

/** Newest first; `before` pages by seq. */
export async function receiptRows(
  db: Db,
  options: { limit: number; before?: number },
): Promise<ReceiptRow[]> {
  let query = db.selectFrom('purge_receipts').selectAll().orderBy('seq', 'desc').limit(options.limit);
  if (options.before) query = query.where('seq', '<', String(options.before));
  return query.execute();
}

export async function receiptRowOfRun(db: Db, runId: string): Promise<ReceiptRow | undefined> {
  return db.selectFrom('purge_receipts').selectAll().where('run_id', '=', runId).executeTakeFirst();
}

export async function countReceipts(db: Db): Promise<number> {
  const row = await db
    .selectFrom('purge_receipts')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** Oldest first, the receipts after seq `after`. */
export async function receiptRowsAfter(db: Db, after: string, limit: number): Promise<ReceiptRow[]> {
  return db
    .selectFrom('purge_receipts')
    .selectAll()
    .where('seq', '>', after)
    .orderBy('seq')
    .limit(limit)
    .execute();
}
