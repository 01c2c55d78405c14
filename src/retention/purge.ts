import { PARQUET_AREAS } from '../analytics/export.ts';
import { prune as pruneRollups } from '../analytics/rollups.ts';
import { pruneUsage } from '../analytics/usage.ts';
import { snapshotHeldBytes } from '../analytics/usage-held.ts';
import type { Db } from '../catalog/database.ts';
import { pruneDeadLetters } from '../catalog/dead-letters.ts';
import {
  expiredByHold,
  expiredImages as expiredRows,
  oldestOverdueSeconds,
} from '../catalog/images-retention.ts';
import { pruneMonths } from '../catalog/quota-usage.ts';
import { pruneLandedTusUploads } from '../catalog/tus-uploads.ts';
import { pruneSessions } from '../catalog/uploads.ts';
import { pruneExpired as pruneDeliveries } from '../catalog/webhook-deliveries.ts';
import type { Clock } from '../clock.ts';
import { utcDay } from '../clock.ts';
import type { TusStorage } from '../ingest/tus-store.ts';
import { STAGING_PREFIX, UPLOAD_TTL_MS } from '../ingest/uploads.ts';
import { IMAGE_AREAS } from '../lake/object-keys.ts';
import { planAbandonedUploads } from './abandoned-uploads.ts';
import { lockAllHeldObjects } from './holds.ts';
import type { Receipt } from './receipts.ts';
import {
  executeRun,
  type ImageToDelete,
  openRun,
  planFactFiles,
  planImages,
  planOrphanHashes,
  type RunDeps,
  recordDone,
  recordObjects,
  resumeOpenRuns,
  sealRun,
  withoutLiveImages,
} from './runs.ts';
import { shortestWindow } from './windows.ts';

export interface PurgeDeps extends RunDeps {
  retentionMs: number;
  /** Lake folders where Kafka claim checks wait to be consumed. */
  claimPrefixes?: string[];
  statsRetentionMs: number;
  batchSize?: number;
  /** At most this many images in one run (one receipt); MAX_IMAGES_PER_RUN by default. */
  maxImagesPerRun?: number;
  /** Resumable uploads' store and expiry: abandoned ones are deleted (kind upload). */
  tus?: { storage: TusStorage; expiryMs: number };
}

/**
 * A run takes at most this many images. Its receipt lists each one's subject hash (67 bytes of JSON
 * each) and is built in memory when the run is sealed, so a backlog of millions goes in several
 * runs, each sealed with a receipt of a few megabytes, rather than in one of tens of megabytes.
 */
export const MAX_IMAGES_PER_RUN = 50_000;

export async function expiredImages(
  db: Db,
  now: Date,
  retentionMs: number,
  limit: number,
): Promise<ImageToDelete[]> {
  return expiredRows(db, now, retentionMs, await shortestWindow(db, retentionMs), limit);
}

/**
 * The retention purge: every copy of every image past its window (originals, renditions, sidecars,
 * catalog rows and jobs), objects of landings that crashed in day partitions past the window, and
 * aggregate rows past the statistics window. First it finishes any run a crash left open. Each run
 * ends with a receipt; a backlog over MAX_IMAGES_PER_RUN images takes several runs. Returns the
 * last run's receipt (the one that also counts orphans, uploads and aggregates).
 */
export async function purgeExpired(deps: PurgeDeps): Promise<Receipt> {
  const { db, lake, clock, log, metrics, retentionMs } = deps;
  const batchSize = deps.batchSize ?? 1000;
  const maxImagesPerRun = deps.maxImagesPerRun ?? MAX_IMAGES_PER_RUN;
  await resumeOpenRuns(deps);
  // Usage's bytes held at the end of yesterday, before this tick's purge deletes anything.
  await snapshotHeldBytes(deps);
  const now = clock.now();
  // Held images stay (and on a lake with Object Lock, their objects carry S3 legal holds first);
  // the receipt counts them by hold, and what only a released hold had kept.
  await lockAllHeldObjects(deps);
  const shortest = await shortestWindow(db, retentionMs);
  const holds = await expiredByHold(db, now, retentionMs, shortest);
  const scope = { reason: 'retention window' };
  let runId = await openRun(db, clock, 'retention', scope, retentionMs, holds);
  // What the tick's runs deleted, for the metrics; not the receipts themselves (their subjects).
  const tally = { images: 0, objects: 0, receipts: [] as number[] };
  const count = (receipt: Receipt) => {
    const deleted = receipt.body.deleted;
    tally.images += deleted.catalog?.count ?? 0;
    tally.objects += ['raw', 'rendition', 'metadata', 'orphan'].reduce(
      (n, k) => n + (deleted[k]?.count ?? 0),
      0,
    );
    tally.receipts.push(receipt.seq);
  };

  const factDays = new Set<string>();
  let inRun = 0;
  let executing: Promise<void> = Promise.resolve();
  for (;;) {
    const batch = await expiredImages(db, now, retentionMs, batchSize);
    if (batch.length === 0) break;
    const taken = await planImages(deps, runId, batch, 'image.expired', factDays);
    // This batch's objects are deleted while the next batch is planned: one waits on the lake, the
    // other mostly on the catalog. Its ledger lines are committed, so a crash meanwhile loses nothing.
    await executing;
    executing = executeRun(deps, runId);
    executing.catch(() => {}); // awaited below; this only keeps a failure from counting as unhandled
    // Rows locked by a concurrent erasure are that erasure's to delete; stop rather than spin on them.
    if (taken === 0) break;
    inRun += taken;
    if (inRun >= maxImagesPerRun) {
      await executing;
      // A full run is sealed with its receipt and the backlog goes on in a new one (its holds were
      // counted in the first).
      await planFactFiles(deps, runId, factDays);
      factDays.clear();
      await executeRun(deps, runId);
      count(await sealRun(deps, runId));
      runId = await openRun(db, clock, 'retention', scope, retentionMs);
      inRun = 0;
    }
  }

  await executing;
  await planFactFiles(deps, runId, factDays);
  await planOrphanHashes(db, runId);

  // Whole day partitions past their window: image areas can then only hold held images and orphans
  // (objects of landings that crashed before their row was committed); Parquet of facts follows the images'
  // window, Parquet of rollups the statistics window.
  const oldestKeptDay = utcDay(new Date(now.getTime() - retentionMs));
  const oldestKeptStatsDay = utcDay(new Date(now.getTime() - deps.statsRetentionMs));
  const areas: Array<[string, string, string]> = [
    ...IMAGE_AREAS.map((area): [string, string, string] => [area, 'orphan', oldestKeptDay]),
    [PARQUET_AREAS.facts, 'parquet', oldestKeptDay],
    ...PARQUET_AREAS.rollups.map((area): [string, string, string] => [
      area,
      'aggregate-parquet',
      oldestKeptStatsDay,
    ]),
  ];
  for (const [area, kind, oldestKept] of areas) {
    for (const child of await lake.children(`${area}/`)) {
      const partitionDay = /^dt=(\d{4}-\d{2}-\d{2})$/.exec(child)?.[1];
      if (!partitionDay || partitionDay >= oldestKept) continue;
      const objects: Array<{ key: string; bytes: number }> = [];
      for await (const object of lake.list(`${area}/${child}/`)) objects.push(object);
      // Held images outlive their partition's window: their objects are not orphans.
      await recordObjects(
        db,
        runId,
        kind,
        kind === 'orphan' ? await withoutLiveImages(db, objects) : objects,
      );
    }
  }

  // Claim-check objects waiting for a Kafka message that never came are image bytes too.
  const claimCutoff = now.getTime() - retentionMs;
  for (const prefix of deps.claimPrefixes ?? []) {
    const stale: Array<{ key: string; bytes: number }> = [];
    for await (const object of lake.list(prefix))
      if (object.modifiedAt.getTime() < claimCutoff) stale.push(object);
    await recordObjects(db, runId, 'claim', stale);
  }

  // Direct uploads never completed: their staged bytes go once the session has expired.
  const staleUploads: Array<{ key: string; bytes: number }> = [];
  for await (const object of lake.list(STAGING_PREFIX)) {
    if (object.modifiedAt.getTime() < now.getTime() - UPLOAD_TTL_MS) staleUploads.push(object);
  }
  await recordObjects(db, runId, 'upload', staleUploads);
  await pruneSessions(db, now, retentionMs);
  if (deps.tus) {
    await planAbandonedUploads(deps, runId, deps.tus.storage, now, deps.tus.expiryMs);
    await pruneLandedTusUploads(db, now, retentionMs);
  }

  // The catalog's records of dead letters follow their messages, which the topic keeps for the window.
  await recordDone(
    db,
    runId,
    'dead-letter',
    await pruneDeadLetters(db, new Date(now.getTime() - retentionMs)),
  );

  // Deliveries whose image went already (its erasure or expiry event) and test events: past their
  // customer's window, like the images they tell of.
  await recordDone(db, runId, 'webhook-delivery', await pruneDeliveries(db, now, retentionMs));

  // Aggregates hold no image data and live for the (longer) statistics window; quota counts for
  // the current and the previous month.
  await recordDone(
    db,
    runId,
    'aggregate',
    (await pruneRollups(db, oldestKeptStatsDay)) +
      (await pruneUsage(db, oldestKeptStatsDay)) +
      (await pruneMonths(db, now)),
  );

  await executeRun(deps, runId);
  const receipt = await sealRun(deps, runId);
  count(receipt);
  const { images, objects } = tally;
  metrics.purgedImages.inc(images);
  metrics.purgedObjects.inc(objects);
  metrics.purgeRuns.inc({ result: 'ok' });
  if (images || objects)
    log.info({ receipts: tally.receipts, images, objects }, 'retention purge deleted expired copies');
  return receipt;
}

/** How far past its expiry the oldest image still present is, in seconds (0 when none is overdue). */
export async function purgeLagSeconds(db: Db, clock: Clock, retentionMs: number): Promise<number> {
  const now = clock.now();
  const shortest = await shortestWindow(db, retentionMs);
  return Math.max(0, await oldestOverdueSeconds(db, now, retentionMs, shortest));
}
