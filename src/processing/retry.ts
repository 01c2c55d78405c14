import type { Db } from '../catalog/database.ts';
import {
  countFailed,
  decodeCursor,
  encodeCursor,
  failedAfter,
  getImage,
  markForRetry,
  type RetryScope,
} from '../catalog/images.ts';
import { countOutstanding, enqueue } from '../catalog/queue.ts';
import type { ImageRow, JobPriority } from '../catalog/schema.ts';
import { AppError } from '../errors.ts';

/**
 * Retrying failed images from their stored original, once whatever failed them is fixed (a
 * processor, a missing dependency). The image goes back to `received` and gets a new processing
 * job, in one transaction; its outcome then replaces the failure, counted once (analytics/facts.ts
 * takes the earlier outcome back out of the rollups). Usage keeps both: each was work done.
 */
export type { RetryScope };

export async function retryImage(
  db: Db,
  id: string,
  options: { customerId?: string; priority: JobPriority; maxAttempts: number },
): Promise<ImageRow> {
  return db.transaction().execute(async (trx) => {
    const image = await getImage(trx, id, options.customerId);
    if (!image) throw new AppError('NOT_FOUND', 'No such image.');
    if (!(await markForRetry(trx, id))) throw new AppError('NOT_FAILED', `It is ${image.status}.`);
    await enqueue(
      trx,
      { imageId: id, customerId: image.customer_id, priority: options.priority },
      options.maxAttempts,
    );
    return (await getImage(trx, id))!;
  });
}

export interface RetryBatch {
  /** Images put back in the queue by this call. */
  retried: number;
  /** Pass back to continue after the last image this call took (or saw); absent at the start. */
  cursor: string | undefined;
  /** Failed images in scope after the cursor: what is left to do. */
  remaining: number;
  /** Bulk jobs in scope still waiting or running: the call retries only while fewer than the window wait. */
  outstanding: number;
}

/**
 * One step of a bulk retry: up to `limit` failed images in scope after the cursor, in landing order,
 * as bulk work, and never more than `window` bulk jobs outstanding in the scope, so a retry of a
 * million failures does not fill the queue (nor the customer's queue share) ahead of new uploads.
 * The cursor is the caller's: a step is safe to repeat, and any number of callers may run at once
 * (an image already retried is skipped in its own transaction).
 */
export async function retryStep(
  db: Db,
  scope: RetryScope,
  cursorText: string | undefined,
  options: { limit: number; window: number; maxAttempts: number },
): Promise<RetryBatch> {
  const decoded = cursorText ? decodeCursor(cursorText) : undefined;
  if (cursorText && !decoded) throw new AppError('VALIDATION_FAILED', 'The cursor is not one this answered.');
  let after = decoded ? { receivedAt: new Date(decoded.receivedAt), id: decoded.id } : null;
  const outstanding = await countOutstanding(db, 'bulk', scope.customerId);
  const room = Math.min(options.limit, options.window - outstanding);
  let retried = 0;
  if (room > 0) {
    for (const image of await failedAfter(db, scope, after, room)) {
      const done = await db.transaction().execute(async (trx) => {
        if (!(await markForRetry(trx, image.id))) return false;
        await enqueue(
          trx,
          { imageId: image.id, customerId: image.customer_id, priority: 'bulk' },
          options.maxAttempts,
        );
        return true;
      });
      if (done) retried++;
      after = { receivedAt: image.received_at, id: image.id };
    }
  }
  return {
    retried,
    cursor: after ? encodeCursor({ received_at: after.receivedAt, id: after.id }) : cursorText,
    remaining: await countFailed(db, scope, after),
    outstanding: outstanding + retried,
  };
}
