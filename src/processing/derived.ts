import sharp from 'sharp';
import type { Rendition } from '../catalog/schema.ts';
import { EXTENSION, type ImageFormat, MEDIA_TYPE } from '../ingest/sniff.ts';
import { type ImageKeyParts, renditionKey } from '../lake/object-keys.ts';
import type { Lake } from '../lake/port.ts';

/**
 * Stores an image a processor derived (a mask, an edge map) next to the renditions, as
 * PROCESSOR.NAME, so it is listed, served and purged like them.
 */
export async function writeDerived(
  lake: Lake,
  parts: ImageKeyParts,
  image: { processor: string; name: string; format: ImageFormat; data: Uint8Array },
): Promise<Rendition> {
  const name = `${image.processor}.${image.name}`;
  const data = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  const key = renditionKey(parts, name, EXTENSION[image.format]);
  // The header only: the chain already checked the bytes are the format they claim.
  const info = await sharp(data)
    .metadata()
    .catch(() => ({ width: undefined, height: undefined }));
  const bytes = await lake.put(key, data, { contentType: MEDIA_TYPE[image.format], durable: false });
  return { name, format: image.format, width: info.width ?? 0, height: info.height ?? 0, bytes, key };
}
