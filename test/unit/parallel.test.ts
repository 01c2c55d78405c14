import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { mapLimit } from '../../src/parallel.ts';

describe('mapLimit', () => {
  it('keeps the items order and never has more than the limit in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const results = await mapLimit(
      Array.from({ length: 40 }, (_, i) => i),
      5,
      async (i) => {
        most = Math.max(most, ++inFlight);
        await sleep((i * 7) % 5);
        inFlight--;
        return i * 2;
      },
    );
    assert.deepEqual(
      results,
      Array.from({ length: 40 }, (_, i) => i * 2),
    );
    assert.equal(most, 5);
  });

  it('rejects with the first failure, and handles no items', async () => {
    await assert.rejects(
      mapLimit([1, 2, 3], 2, async (i) => {
        if (i === 2) throw new Error('two failed');
        return i;
      }),
      /two failed/,
    );
    assert.deepEqual(await mapLimit([], 4, async () => 1), []);
  });
});
