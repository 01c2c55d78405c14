import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metadataKey, rawKey, renditionKey } from '../../src/lake/object-keys.ts';
import { subjectHash } from '../../src/retention/receipts.ts';
import { objectsOf } from '../../src/retention/runs.ts';
import { MemoryLake } from '../fakes/memory-lake.ts';

const receivedAt = new Date('2026-11-21T10:00:00Z');
const image = {
  id: 'img-1',
  customer_id: 'cust-a',
  received_at: receivedAt,
  raw_key: rawKey({ imageId: 'img-1', customerId: 'cust-a', receivedAt }, 'jpg'),
};
const parts = { imageId: image.id, customerId: image.customer_id, receivedAt };

describe('the copies of an image, as a purge or an erasure sees them', () => {
  it('are read from the lake: original, sidecar and every rendition, even ones no row knows of', async () => {
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

    const items = await objectsOf(lake, image);

    assert.deepEqual(
      items.map((i) => [i.kind, i.key, i.bytes]),
      [
        ['raw', image.raw_key, 100],
        ['metadata', metadataKey(parts), 10],
        ['rendition', renditionKey(parts, 'preview', 'webp'), 30],
        ['rendition', renditionKey(parts, 'stale', 'webp'), 5],
        ['rendition', renditionKey(parts, 'thumb', 'webp'), 20],
      ],
    );
    assert.ok(
      items.every((i) => i.subjectHash === subjectHash('img-1')),
      'each copy names its image only by hash',
    );
  });

  it('are none when everything is gone already', async () => {
    assert.deepEqual(await objectsOf(new MemoryLake(), image), []);
  });
});
