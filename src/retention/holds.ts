import { randomUUID } from 'node:crypto';
import { getCustomer } from '../catalog/customers.ts';
import {
  activeHolds,
  getHold,
  type HoldRow,
  insertHold,
  lockHoldsExclusive,
  markObjectsLocked,
  markReleased,
} from '../catalog/holds.ts';
import { heldElsewhere, imagesAmong, imagesOfHold } from '../catalog/images-retention.ts';
import { AppError } from '../errors.ts';
import { appendReceipt, type Receipt, subjectHash } from './receipts.ts';
import { objectsOf, type RunDeps } from './runs.ts';

/**
 * Legal holds: a dispute or a court order keeps a customer's images (or some images) past their
 * window until an admin releases the hold. The purge skips held images and counts them in its
 * receipt by hold; erasure refuses them unless forced. Placing and releasing are receipts in the
 * hash chain. On a lake with S3 Object Lock the held objects also carry an S3 legal hold, so a
 * lifecycle rule or another client cannot delete them either.
 */
export interface HoldRequest {
  customerId?: string;
  imageIds?: string[];
  reason: string;
  until?: Date;
}

export async function placeHold(
  deps: RunDeps,
  request: HoldRequest,
): Promise<{ hold: HoldRow; receipt: Receipt }> {
  const now = deps.clock.now();
  const imageIds = request.imageIds ? [...new Set(request.imageIds)] : undefined;
  if (!request.customerId && !imageIds?.length)
    throw new AppError('VALIDATION_FAILED', 'A hold names a customerId, imageIds, or both.');
  if (request.until && request.until.getTime() <= now.getTime())
    throw new AppError('VALIDATION_FAILED', '"until" must be in the future.');
  const placed = await deps.db.transaction().execute(async (trx) => {
    await lockHoldsExclusive(trx);
    if (request.customerId && !(await getCustomer(trx, request.customerId)))
      throw new AppError('NOT_FOUND', 'No such customer.');
    let customerId = request.customerId ?? null;
    if (imageIds) {
      const found = await imagesAmong(trx, imageIds);
      const owners = new Set(found.map((i) => i.customer_id));
      const missing = imageIds.filter((id) => !found.some((i) => i.id === id));
      const foreign = request.customerId ? found.filter((i) => i.customer_id !== request.customerId) : [];
      if (missing.length || foreign.length)
        throw new AppError(
          'NOT_FOUND',
          `No such image${request.customerId ? ' of this customer' : ''}: ${[...missing, ...foreign.map((i) => i.id)].slice(0, 5).join(', ')}.`,
        );
      // Images of one customer: the hold is that customer's (listed with it), still over these images only.
      if (!customerId && owners.size === 1) customerId = [...owners][0]!;
    }
    const hold = await insertHold(trx, {
      customerId,
      imageIds: imageIds ?? null,
      reason: request.reason,
      until: request.until ?? null,
      at: now,
    });
    const receipt = await appendReceipt(trx, {
      runId: randomUUID(),
      kind: 'hold',
      scope: {
        holdId: hold.id,
        ...(customerId ? { customerId } : {}),
        ...(imageIds ? { images: imageIds.length } : { images: 'all of the customer' }),
        reason: hold.reason,
        until: hold.until?.toISOString() ?? null,
      },
      startedAt: now.toISOString(),
      finishedAt: now.toISOString(),
      windowMs: null,
      deleted: {},
      subjects: (imageIds ?? []).map(subjectHash).sort(),
    });
    return { hold, receipt };
  });
  await lockHeldObjects(deps, placed.hold);
  return placed;
}

export async function releaseHold(
  deps: RunDeps,
  id: string,
  reason: string,
): Promise<{ hold: HoldRow; receipt: Receipt }> {
  const now = deps.clock.now();
  const released = await deps.db.transaction().execute(async (trx) => {
    await lockHoldsExclusive(trx);
    const hold = await markReleased(trx, id, now, reason);
    if (!hold) {
      if (await getHold(trx, id)) throw new AppError('HOLD_RELEASED');
      throw new AppError('NOT_FOUND', 'No such hold.');
    }
    const receipt = await appendReceipt(trx, {
      runId: randomUUID(),
      kind: 'release',
      scope: {
        holdId: hold.id,
        ...(hold.customer_id ? { customerId: hold.customer_id } : {}),
        reason,
        heldSince: hold.created_at.toISOString(),
      },
      startedAt: now.toISOString(),
      finishedAt: now.toISOString(),
      windowMs: null,
      deleted: {},
      subjects: (hold.image_ids ?? []).map(subjectHash).sort(),
    });
    return { hold, receipt };
  });
  await unlockReleasedObjects(deps, released.hold);
  return released;
}

/**
 * Gives every object of the hold's images landed since the last time an S3 legal hold (a no-op on
 * lakes without Object Lock). Called when the hold is placed and by every purge, which so also
 * covers images that land under a customer's hold later, long before a lifecycle rule (the window
 * plus a day) could reach them.
 */
export async function lockHeldObjects(deps: RunDeps, hold: HoldRow): Promise<void> {
  const { lake } = deps;
  if (!lake.legalHold || hold.released_at) return;
  let after = hold.objects_locked_through
    ? { receivedAt: hold.objects_locked_through, id: 'ffffffff-ffff-ffff-ffff-ffffffffffff' }
    : null;
  for (;;) {
    const page = await imagesOfHold(deps.db, hold.id, after, 200);
    if (page.length === 0) return;
    for (const image of page)
      for (const object of await objectsOf(lake, image))
        if (!(await lake.legalHold(object.key!, true))) return; // the bucket has no Object Lock
    const last = page[page.length - 1]!;
    await markObjectsLocked(deps.db, hold.id, last.received_at);
    after = { receivedAt: last.received_at, id: last.id };
  }
}

/** Every active hold's newer images get their S3 legal holds; the purge calls this each time. */
export async function lockAllHeldObjects(deps: RunDeps): Promise<void> {
  if (!deps.lake.legalHold) return;
  for (const hold of await activeHolds(deps.db)) await lockHeldObjects(deps, hold);
}

/** Clears the S3 legal holds of a released hold's images that no other active hold covers. */
async function unlockReleasedObjects(deps: RunDeps, hold: HoldRow): Promise<void> {
  const { lake } = deps;
  if (!lake.legalHold || !hold.objects_locked_through) return;
  let after: { receivedAt: Date; id: string } | null = null;
  for (;;) {
    const page = await imagesOfHold(deps.db, hold.id, after, 200);
    if (page.length === 0) return;
    for (const image of page) {
      if (await heldElsewhere(deps.db, image.id, hold.id)) continue;
      for (const object of await objectsOf(lake, image))
        if (!(await lake.legalHold(object.key!, false))) return;
    }
    const last = page[page.length - 1]!;
    after = { receivedAt: last.received_at, id: last.id };
  }
}
