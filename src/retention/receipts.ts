import { createHash } from 'node:crypto';
import type { Db } from '../catalog/database.ts';
import { sealedRunsWithoutReceipt } from '../catalog/purge-runs.ts';
import {
  countReceipts,
  insertReceipt,
  lastHash,
  lockChain,
  type ReceiptRow,
  receiptRowOfRun,
  receiptRows,
  receiptRowsAfter,
} from '../catalog/receipts.ts';

/**
 * Receipts: one per purge or erasure, in an append-only table (a trigger refuses UPDATE and
 * DELETE), each carrying the SHA-256 of the receipt before it. Editing or removing one breaks
 * every hash after it, which verifyReceipts finds and names.
 */
export const GENESIS = '0'.repeat(64);

export interface CopyCount {
  count: number;
  bytes: number;
}

export interface ReceiptBody {
  runId: string;
  /** retention and erasure delete; hold and release record a legal hold placed or released. */
  kind: 'retention' | 'erasure' | 'hold' | 'release';
  scope: Record<string, unknown>;
  startedAt: string;
  finishedAt: string;
  windowMs: number | null;
  /** What was deleted, per kind of copy: raw, rendition, metadata, orphan, catalog, fact, webhook-delivery, aggregate. */
  deleted: Record<string, CopyCount>;
  /** SHA-256 of each image id deleted (or held), sorted: proof of which images, without naming them. */
  subjects: string[];
  /**
   * Purges and erasures, when holds were involved: what active holds kept back (`kept`), what was
   * taken only because a hold was released (`released`), and what a forced erasure took despite
   * a hold (`overridden`), each by hold id. Absent when no hold was involved, so receipts from
   * before holds hash as they did.
   */
  holds?: ReceiptHolds;
}

export type HoldCount = { images: number; bytes: number };
export interface ReceiptHolds {
  kept?: Record<string, HoldCount>;
  released?: Record<string, HoldCount>;
  overridden?: Record<string, HoldCount>;
}

export interface Receipt {
  seq: number;
  body: ReceiptBody;
  prevHash: string;
  hash: string;
}

/** JSON with keys in a fixed order, so the same receipt always hashes the same. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function receiptHash(prevHash: string, body: ReceiptBody): string {
  return createHash('sha256').update(prevHash).update('\n').update(canonical(body)).digest('hex');
}

export function subjectHash(imageId: string): string {
  return createHash('sha256').update(imageId).digest('hex');
}

/** Appends a receipt inside the caller's transaction (the chain's lock serializes appends). */
export async function appendReceipt(trx: Db, body: ReceiptBody): Promise<Receipt> {
  await lockChain(trx);
  const prevHash = (await lastHash(trx)) ?? GENESIS;
  const hash = receiptHash(prevHash, body);
  const seq = await insertReceipt(trx, { runId: body.runId, body, prevHash, hash });
  return { seq, body, prevHash, hash };
}

function toReceipt(row: ReceiptRow): Receipt {
  return { seq: Number(row.seq), body: row.body as ReceiptBody, prevHash: row.prev_hash, hash: row.hash };
}

export async function listReceipts(db: Db, options: { limit: number; before?: number }): Promise<Receipt[]> {
  return (await receiptRows(db, options)).map(toReceipt);
}

export async function receiptOfRun(db: Db, runId: string): Promise<Receipt | undefined> {
  const row = await receiptRowOfRun(db, runId);
  return row ? toReceipt(row) : undefined;
}

export interface Verification {
  ok: boolean;
  receipts: number;
  problems: Array<{ seq: number | null; runId?: string; problem: string }>;
}

/**
 * Walks the whole chain. A receipt whose content no longer matches its hash was edited; one whose
 * prevHash is not the hash before it follows a removed or edited receipt; a sealed run without a
 * receipt lost its receipt.
 */
export async function verifyReceipts(
  db: Db,
  onProgress?: (done: number, total: number) => void,
): Promise<Verification> {
  const total = await countReceipts(db);
  const problems: Verification['problems'] = [];
  let prev = GENESIS;
  let done = 0;
  let after = '0';
  for (;;) {
    const rows = await receiptRowsAfter(db, after, 1000);
    if (rows.length === 0) break;
    for (const row of rows) {
      const receipt = toReceipt(row);
      if (receipt.prevHash !== prev) {
        problems.push({
          seq: receipt.seq,
          runId: receipt.body.runId,
          problem: `does not follow the receipt before it (expected prevHash ${prev.slice(0, 12)}…, found ${receipt.prevHash.slice(0, 12)}…): a receipt before it was removed or edited`,
        });
      }
      if (receiptHash(receipt.prevHash, receipt.body) !== receipt.hash) {
        problems.push({
          seq: receipt.seq,
          runId: receipt.body.runId,
          problem: 'its content does not match its hash: it was edited',
        });
      }
      prev = receipt.hash;
      after = row.seq;
      done++;
    }
    onProgress?.(done, total);
  }
  const orphanRuns = await sealedRunsWithoutReceipt(db);
  for (const run of orphanRuns)
    problems.push({
      seq: null,
      runId: run.id,
      problem: 'the run was sealed but its receipt is missing: it was removed',
    });
  return { ok: problems.length === 0, receipts: done, problems };
}
