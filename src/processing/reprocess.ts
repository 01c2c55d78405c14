import type { Db } from '../catalog/database.ts';
import { countReprocessable, nextReprocessable } from '../catalog/images.ts';
import { countRunJobs, dropQueuedRunJobs, enqueueReprocess } from '../catalog/queue.ts';
import {
  advanceRunCursor,
  findRunningRun,
  insertRun,
  lockRunningRun,
  lockRunStarts,
  markRunCancelled,
  markRunDone,
  runningRunIds,
} from '../catalog/reprocess-runs.ts';

export { getRun, listRuns, type RunRow } from '../catalog/reprocess-runs.ts';

/**
 * Re-running one processor over the images still in retention, e.g. after a new version. A run is a
 * row with a cursor in landing order; the workers queue its jobs a window at a time (so a run over
 * millions of images never floods the queue uploads share) and count each outcome in the same
 * transaction that records it (processing/jobs/reprocess-image.ts). A run survives restarts: the
 * cursor says where it was.
 */
export interface ReprocessRequest {
  processor: string;
  customerId?: string;
  since?: Date;
  /** Also re-run images already at the processor's current version. */
  force?: boolean;
}

/** Starts a run, or returns the one already running with the same scope (re-running resumes it). */
export async function startRun(db: Db, request: ReprocessRequest, now: Date, retentionMs: number) {
  return db.transaction().execute(async (trx) => {
    await lockRunStarts(trx);
    const existing = await findRunningRun(trx, request);
    if (existing) return { run: existing, resumed: true };
    const total = await countReprocessable(trx, request, now, retentionMs);
    const run = await insertRun(trx, request, total, now);
    return { run, resumed: false };
  });
}

export async function cancelRun(db: Db, id: string, now: Date): Promise<boolean> {
  const cancelled = await markRunCancelled(db, id, now);
  await dropQueuedRunJobs(db, id);
  return cancelled;
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
  let queued = 0;
  for (const id of await runningRunIds(db)) {
    queued += await db.transaction().execute(async (trx) => {
      const run = await lockRunningRun(trx, id);
      if (!run) return 0;
      const outstanding = await countRunJobs(trx, id);
      const room = options.window - outstanding;
      if (room <= 0) return 0;
      const batch = await nextReprocessable(
        trx,
        { customerId: run.customer_id ?? undefined, since: run.since ?? undefined },
        options.now,
        options.retentionMs,
        { receivedAt: run.cursor_received_at, id: run.cursor_id },
        room,
      );
      if (batch.length === 0) {
        if (outstanding === 0) await markRunDone(trx, id, options.now);
        return 0;
      }
      await enqueueReprocess(
        trx,
        { id, processor: run.processor },
        batch.map((image) => ({ id: image.id, customerId: image.customer_id })),
        options.maxAttempts,
      );
      await advanceRunCursor(trx, id, batch.at(-1)!, batch.length);
      return batch.length;
    });
  }
  return queued;
}
