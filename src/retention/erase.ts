import { heldOf, imagesToErase } from '../catalog/images-retention.ts';
import { AppError } from '../errors.ts';
import { IMAGE_AREAS } from '../lake/object-keys.ts';
import type { Receipt } from './receipts.ts';
import { subjectHash } from './receipts.ts';
import {
  executeRun,
  openRun,
  planFactFiles,
  planImages,
  planOrphans,
  type RunDeps,
  sealRun,
  withoutLiveImages,
} from './runs.ts';

/**
 * Erasure on request: every copy of the chosen images, now, whatever their age, through the same
 * ledger as the purge, ending with a receipt. For a whole customer, its lake partitions are listed
 * too, so objects no row knows of go as well. Images under a legal hold are refused (LEGAL_HOLD,
 * nothing erased) unless `force`, which only an admin may give; the receipt then names the holds.
 */
export async function eraseImages(
  deps: RunDeps,
  target: { customerId: string; imageId?: string },
  options: { force?: boolean } = {},
): Promise<Receipt> {
  const { db, lake } = deps;
  const held = await heldOf(db, target);
  const holdIds = Object.keys(held);
  if (holdIds.length && !options.force) {
    const images = Math.max(...Object.values(held).map((h) => h.images));
    throw new AppError(
      'LEGAL_HOLD',
      `At least ${images} image${images === 1 ? ' is' : 's are'} held by ${holdIds.length === 1 ? 'hold' : 'holds'} ${holdIds.join(', ')}.`,
    );
  }
  const scope = target.imageId
    ? { customerId: target.customerId, image: subjectHash(target.imageId) }
    : { customerId: target.customerId };
  const runId = await openRun(db, deps.clock, 'erasure', scope, null, { overridden: held });
  const factDays = new Set<string>();
  for (;;) {
    // A hold placed while this runs keeps its images (planImages skips them; the next batch too).
    const batch = await imagesToErase(db, target, 200, { includeHeld: Boolean(options.force) });
    if (batch.length === 0) break;
    const taken = await planImages(deps, runId, batch, 'image.erased', factDays, { force: options.force });
    await executeRun(deps, runId);
    if (taken === 0) break;
  }
  await planFactFiles(deps, runId, factDays);
  await executeRun(deps, runId);
  if (!target.imageId) {
    for (const area of IMAGE_AREAS) {
      for (const partition of await lake.children(`${area}/`)) {
        const left: Array<{ key: string; bytes: number }> = [];
        for await (const object of lake.list(`${area}/${partition}/customer=${target.customerId}/`))
          left.push(object);
        // Not the objects of images still in the catalog: held (a hold placed while this ran) or new.
        await planOrphans(db, runId, await withoutLiveImages(db, left));
      }
    }
    await executeRun(deps, runId);
  }
  return sealRun(deps, runId);
}
