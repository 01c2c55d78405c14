import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { factsDayPrefix } from '../analytics/export.ts';
import { deleteForImages } from '../analytics/facts.ts';
import type { Db } from '../catalog/database.ts';
import { lockHoldsShared } from '../catalog/holds.ts';
import { deleteHashesForImages, orphanHashes } from '../catalog/image-hashes.ts';
import {
  deleteImages,
  heldAmong,
  type ImageToDelete,
  imagesAmong,
  lockForDeletion,
} from '../catalog/images-retention.ts';
import {
  heartbeat,
  insertRun,
  type LedgerItem,
  ledgerSubjects,
  ledgerTotals,
  lockRun,
  markDone,
  pendingLines,
  recordLedger,
  runsToResume,
  sealAndClearLedger,
} from '../catalog/purge-runs.ts';
import { deleteForImages as deleteDeliveries } from '../catalog/webhook-deliveries.ts';
import { type Clock, utcDay } from '../clock.ts';
import { imageIdOfKey, metadataKey, renditionPrefix } from '../lake/object-keys.ts';
import type { Lake } from '../lake/port.ts';
import type { Metrics } from '../observability/metrics.ts';
import { mapLimit } from '../parallel.ts';
import { announceEnd } from '../webhooks/events.ts';
import {
  appendReceipt,
  type CopyCount,
  type Receipt,
  type ReceiptBody,
  type ReceiptHolds,
  receiptOfRun,
  subjectHash,
} from './receipts.ts';

/**
 * A purge or an erasure is a run with a ledger. Each batch records every copy it is about to delete
 * in the ledger and deletes the catalog rows in the same transaction; then the objects are deleted
 * and ticked off; last, the run is sealed with a receipt built from the ledger. Killed at any point,
 * the run is resumed from its ledger: no object is left without its row (the ledger still lists it)
 * and no copy is counted twice (each ledger line is counted once, at sealing).
 */
export interface RunDeps {
  db: Db;
  lake: Lake;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

export type { ImageToDelete, LedgerItem };

export async function openRun(
  db: Db,
  clock: Clock,
  kind: 'retention' | 'erasure',
  scope: Record<string, unknown>,
  windowMs: number | null,
  holds?: ReceiptHolds,
): Promise<string> {
  const id = randomUUID();
  // Only what holds were involved in: a receipt without holds has no `holds` at all.
  const involved = Object.fromEntries(
    Object.entries(holds ?? {}).filter(([, byHold]) => Object.keys(byHold ?? {}).length > 0),
  );
  await insertRun(db, {
    id,
    kind,
    scope,
    startedAt: clock.now(),
    windowMs,
    holds: Object.keys(involved).length ? involved : undefined,
  });
  return id;
}

/** Every object an image has in the lake, read from the lake itself (not only the row). */
export async function objectsOf(lake: Lake, image: ImageToDelete): Promise<LedgerItem[]> {
  const parts = { imageId: image.id, customerId: image.customer_id, receivedAt: image.received_at };
  const subject = subjectHash(image.id);
  const renditions = async () => {
    const found: LedgerItem[] = [];
    for await (const object of lake.list(renditionPrefix(parts)))
      found.push({ kind: 'rendition', key: object.key, subjectHash: subject, bytes: object.bytes });
    return found;
  };
  // Three independent round trips (two on S3 are HEADs, one a LIST): asked at once.
  const [raw, sidecar, listed] = await Promise.all([
    lake.head(image.raw_key),
    lake.head(metadataKey(parts)),
    renditions(),
  ]);
  const items: LedgerItem[] = [];
  if (raw) items.push({ kind: 'raw', key: raw.key, subjectHash: subject, bytes: raw.bytes });
  if (sidecar) items.push({ kind: 'metadata', key: sidecar.key, subjectHash: subject, bytes: sidecar.bytes });
  items.push(...listed);
  return items;
}

/** How many images' objects a batch's planning looks up at once (each three lake round trips). */
const LOOKUP_CONCURRENCY = 16;

/**
 * Plans a batch of images: lists their objects, then in one transaction takes the rows that are still
 * there (another run may have taken some) and under no legal hold (unless `force`), records their
 * copies and deletes the rows. Returns how many images this run took.
 */
export async function planImages(
  deps: RunDeps,
  runId: string,
  images: ImageToDelete[],
  /** The webhook event the customers' endpoints get for each image taken. */
  event: 'image.erased' | 'image.expired',
  factDays?: Set<string>,
  options: { force?: boolean } = {},
): Promise<number> {
  if (images.length === 0) return 0;
  const listed = new Map(
    await mapLimit(
      images,
      LOOKUP_CONCURRENCY,
      async (image) => [image.id, await objectsOf(deps.lake, image)] as const,
    ),
  );
  return deps.db.transaction().execute(async (trx) => {
    await heartbeat(trx, runId);
    // Holds placed before this point are seen below; one placed later waits for this transaction.
    await lockHoldsShared(trx);
    const lockedRows = await lockForDeletion(
      trx,
      images.map((i) => i.id),
    );
    const held = options.force
      ? new Set<string>()
      : await heldAmong(
          trx,
          lockedRows.map((r) => r.id),
        );
    const locked = lockedRows.filter((r) => !held.has(r.id));
    if (locked.length === 0) return 0;
    const items: LedgerItem[] = [];
    for (const row of locked) {
      items.push(...(listed.get(row.id) ?? []));
      // The catalog row: deleted in this very transaction, so it is done as it is recorded.
      items.push({ kind: 'catalog', key: null, subjectHash: subjectHash(row.id), bytes: 0, done: true });
    }
    // The per-image analytics facts follow their image; the rollups, which hold no image data, stay.
    const ids = locked.map((r) => r.id);
    const taken = new Set(ids);
    const facts = await deleteForImages(trx, ids);
    for (const imageId of facts)
      items.push({ kind: 'fact', key: null, subjectHash: subjectHash(imageId), bytes: 0, done: true });
    // The similarity index holds each image's fingerprints: they go with it.
    for (const imageId of await deleteHashesForImages(trx, ids))
      items.push({ kind: 'hash', key: null, subjectHash: subjectHash(imageId), bytes: 0, done: true });
    // Their day's Parquet file still holds them: it goes too, and the next export rewrites it without them.
    if (facts.length)
      for (const image of images) if (taken.has(image.id)) factDays?.add(utcDay(image.received_at));
    // Webhook deliveries hold the image's metadata: they go with it, each counted in the receipt.
    for (const imageId of await deleteDeliveries(trx, ids))
      items.push({
        kind: 'webhook-delivery',
        key: null,
        subjectHash: subjectHash(imageId),
        bytes: 0,
        done: true,
      });
    await recordLedger(trx, runId, items);
    await deleteImages(trx, ids);
    // Told in the same transaction: the receiver hears of the end exactly when it happened.
    await announceEnd(
      trx,
      event,
      images.filter((i) => taken.has(i.id)),
      deps.clock.now(),
    );
    return locked.length;
  });
}

/**
 * The objects of images no catalog row owns any more. Listing a partition finds the objects of held
 * images (kept past the window) and of images landing meanwhile too: those are not orphans.
 */
export async function withoutLiveImages<T extends { key: string }>(db: Db, objects: T[]): Promise<T[]> {
  const ids = [...new Set(objects.map((o) => imageIdOfKey(o.key)).filter((id) => id !== undefined))];
  const live = new Set((await imagesAmong(db, ids)).map((i) => i.id));
  return objects.filter((o) => !live.has(imageIdOfKey(o.key) ?? ''));
}

/** Records objects found without an image (orphans), to be deleted by the run. */
export async function planOrphans(
  db: Db,
  runId: string,
  objects: Array<{ key: string; bytes: number }>,
): Promise<void> {
  await recordObjects(db, runId, 'orphan', objects);
}

/** Records lake objects of a given kind, to be deleted by the run. */
export async function recordObjects(
  db: Db,
  runId: string,
  kind: string,
  objects: Array<{ key: string; bytes: number }>,
): Promise<void> {
  await recordLedger(
    db,
    runId,
    objects.map((o) => ({ kind, key: o.key, subjectHash: null, bytes: o.bytes })),
  );
}

/** Records rows deleted from an aggregate table, already gone: counted in the receipt. */
export async function recordDone(db: Db, runId: string, kind: string, count: number): Promise<void> {
  await recordLedger(
    db,
    runId,
    Array.from({ length: count }, () => ({ kind, key: null, subjectHash: null, bytes: 0, done: true })),
  );
}

/**
 * How many pending ledger lines executeRun deletes at a time: each page is one read, the lake's
 * deleteMany (parallel inside: files at once, or DeleteObjects of 1000 keys), and one update.
 */
const EXECUTE_PAGE = 4000;

/** Deletes every object the ledger still lists as pending, ticking each off. Idempotent. */
export async function executeRun(deps: RunDeps, runId: string): Promise<void> {
  for (;;) {
    const pending = await pendingLines(deps.db, runId, EXECUTE_PAGE);
    if (pending.length === 0) return;
    const keys = pending.flatMap((item) => (item.key ? [item.key] : []));
    if (keys.length) await deps.lake.deleteMany(keys);
    await markDone(
      deps.db,
      pending.map((p) => p.id),
    );
  }
}

/** Builds the receipt from the ledger and appends it, once; sealing a sealed run returns its receipt. */
export async function sealRun(deps: RunDeps, runId: string): Promise<Receipt> {
  const existing = await receiptOfRun(deps.db, runId);
  if (existing) return existing;
  const receipt = await deps.db.transaction().execute(async (trx) => {
    const run = await lockRun(trx, runId);
    const again = await receiptOfRun(trx, runId);
    if (again) return again;
    const totals = await ledgerTotals(trx, runId);
    const subjects = await ledgerSubjects(trx, runId);
    const deleted: Record<string, CopyCount> = {};
    for (const t of totals) deleted[t.kind] = { count: Number(t.count), bytes: Number(t.bytes ?? 0) };
    const finishedAt = deps.clock.now();
    const body: ReceiptBody = {
      runId,
      kind: run.kind,
      scope: run.scope,
      startedAt: run.started_at.toISOString(),
      finishedAt: finishedAt.toISOString(),
      windowMs: run.window_ms === null ? null : Number(run.window_ms),
      deleted,
      subjects,
      ...(run.holds ? { holds: run.holds as ReceiptHolds } : {}),
    };
    const appended = await appendReceipt(trx, body);
    // The receipt now holds the totals and the subjects; the ledger lines have done their job.
    await sealAndClearLedger(trx, runId, finishedAt);
    return appended;
  });
  return receipt;
}

/**
 * Finishes runs a crash left open: deletes what their ledgers still list, then seals them. Retention
 * runs belong to the singleton scheduler, so an open one is always abandoned; an erasure may still be
 * running in an API process, so it is taken over only when its heartbeat is older than staleMs.
 */
export async function resumeOpenRuns(deps: RunDeps, staleMs = 120_000): Promise<Receipt[]> {
  const open = await runsToResume(deps.db, staleMs);
  const receipts: Receipt[] = [];
  for (const run of open) {
    deps.log.warn({ run: run.id, kind: run.kind }, 'resuming a purge run that did not finish');
    await executeRun(deps, run.id);
    receipts.push(await sealRun(deps, run.id));
  }
  return receipts;
}

/** Deletes index rows whose image is gone (a fault the audit reports), as done ledger lines of kind hash. */
export async function planOrphanHashes(db: Db, runId: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const orphans = await orphanHashes(trx, 10_000);
    const gone = await deleteHashesForImages(
      trx,
      orphans.map((o) => o.imageId),
    );
    await recordLedger(
      trx,
      runId,
      gone.map((imageId) => ({
        kind: 'hash',
        key: null,
        subjectHash: subjectHash(imageId),
        bytes: 0,
        done: true,
      })),
    );
  });
}

/** Records the Parquet files of the given days' facts, which still hold facts just deleted. */
export async function planFactFiles(deps: RunDeps, runId: string, days: Set<string>): Promise<void> {
  for (const day of days) {
    const files: Array<{ key: string; bytes: number }> = [];
    for await (const object of deps.lake.list(factsDayPrefix(day))) files.push(object);
    await recordObjects(deps.db, runId, 'parquet', files);
  }
}
