import { imagesToErase } from '../catalog/images-retention.ts';
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
} from './runs.ts';

/**
 * Erasure on request: every copy of the chosen images, now, whatever their age, through the same
 * ledger as the purge, ending with a receipt. For a whole customer, its lake partitions are listed
 * too, so objects no row knows of go as well.
 */
export async function eraseImages(
  deps: RunDeps,
  target: { customerId: string; imageId?: string },
): Promise<Receipt> {
  const { db, lake } = deps;
  const scope = target.imageId
    ? { customerId: target.customerId, image: subjectHash(target.imageId) }
    : { customerId: target.customerId };
  const runId = await openRun(db, deps.clock, 'erasure', scope, null);
  const factDays = new Set<string>();
  for (;;) {
    const batch = await imagesToErase(db, target, 200);
    if (batch.length === 0) break;
    const taken = await planImages(deps, runId, batch, 'image.erased', factDays);
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
        await planOrphans(db, runId, left);
      }
    }
    await executeRun(deps, runId);
  }
  return sealRun(deps, runId);
}
