import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metadataKey, rawKey, renditionKey } from '../../src/lake/keys.ts';
import { deleteImageObjects } from '../../src/retention/erase.ts';
import { MemoryLake } from '../fakes/memory-lake.ts';

const receivedAt = new Date('2026-11-21T10:00:00Z');
const image = {
  id: 'img-1',
  customer_id: 'cust-a',
  received_at: receivedAt,
  raw_key: rawKey({ imageId: 'img-1', customerId: 'cust-a', receivedAt }, 'jpg'),
};
const parts = { imageId: image.id, customerId: image.customer_id, receivedAt };

describe('erasing an image', () => {
  it('deletes the original, the sidecar and every rendition, including ones no row knows of', async () => {
    const lake = new MemoryLake();
    await lake.put(image.raw_key, Buffer.alloc(100));
    await lake.put(metadataKey(parts), Buffer.alloc(10));
    await lake.put(renditionKey(parts, 'thumb', 'webp'), Buffer.alloc(20));
    await lake.put(renditionKey(parts, 'preview', 'webp'), Buffer.alloc(30));
    // An output of an attempt that crashed before it was recorded.
    await lake.put(renditionKey(parts, 'stale', 'webp'), Buffer.alloc(5));
    const neighbour = { imageId: 'img-2', customerId: 'cust-a', receivedAt };
    await lake.put(rawKey(neighbour, 'png'), Buffer.alloc(7));
    await lake.put(renditionKey(neighbour, 'thumb', 'webp'), Buffer.alloc(7));

    const deleted = await deleteImageObjects(lake, image);

    assert.deepEqual(deleted, { objects: 5, bytes: 165 });
    assert.deepEqual(
      [...lake.objects.keys()].sort(),
      [rawKey(neighbour, 'png'), renditionKey(neighbour, 'thumb', 'webp')].sort(),
    );
  });

  it('is idempotent: erasing again finds nothing and fails nothing', async () => {
    const lake = new MemoryLake();
    assert.deepEqual(await deleteImageObjects(lake, image), { objects: 0, bytes: 0 });
  });
});
