import type { Db } from '../catalog/database.ts';
import { metadataKey, renditionPrefix } from '../lake/keys.ts';
import type { Lake } from '../lake/port.ts';

export interface ErasableImage {
  id: string;
  customer_id: string;
  received_at: Date;
  raw_key: string;
}

/**
 * Deletes every object an image has in the lake: the original, the metadata sidecar, and whatever
 * is under its rendition folder (listed, not taken from the row, so outputs of an attempt that
 * never recorded go too). Returns what was deleted.
 */
export async function deleteImageObjects(
  lake: Lake,
  image: ErasableImage,
): Promise<{ objects: number; bytes: number }> {
  const parts = { imageId: image.id, customerId: image.customer_id, receivedAt: image.received_at };
  const keys = [image.raw_key, metadataKey(parts)];
  for await (const object of lake.list(renditionPrefix(parts))) keys.push(object.key);
  let objects = 0;
  let bytes = 0;
  for (const key of keys) {
    const info = await lake.head(key);
    if (!info) continue;
    await lake.delete(key);
    objects += 1;
    bytes += info.bytes;
  }
  return { objects, bytes };
}

/** Erases one image now: objects first, then the row (its job goes with it). */
export async function eraseImage(
  db: Db,
  lake: Lake,
  image: ErasableImage,
): Promise<{ objects: number; bytes: number }> {
  const deleted = await deleteImageObjects(lake, image);
  await db.deleteFrom('images').where('id', '=', image.id).execute();
  return deleted;
}
