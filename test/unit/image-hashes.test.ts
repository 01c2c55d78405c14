import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BANDS,
  bandNeighbours,
  bandsOf,
  hexOf,
  MAX_DISTANCE,
  signedOf,
} from '../../src/catalog/image-hashes.ts';
import { hammingDistance } from '../../src/processing/phash.ts';

const randomHash = () =>
  Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join('');

/** The hash with `bits` distinct random bits flipped. */
function flip(hash: string, bits: number): string {
  let value = BigInt(`0x${hash}`);
  const chosen = new Set<number>();
  while (chosen.size < bits) chosen.add(Math.floor(Math.random() * 64));
  for (const bit of chosen) value ^= 1n << BigInt(bit);
  return value.toString(16).padStart(16, '0');
}

describe('the similarity index (multi-index hashing)', () => {
  it('cuts a hash into four 16-bit bands, most significant first', () => {
    assert.deepEqual(bandsOf('0001ffff8000abcd'), [0x0001, 0xffff, 0x8000, 0xabcd]);
  });

  it('stores a hash as a signed bigint and reads it back', () => {
    for (const hash of [
      '0000000000000000',
      'ffffffffffffffff',
      '8000000000000000',
      '7fffffffffffffff',
      randomHash(),
    ])
      assert.equal(hexOf(signedOf(hash)), hash);
    assert.equal(signedOf('ffffffffffffffff'), '-1');
  });

  it('probes every band value within the radius, each once', () => {
    for (const [radius, count] of [
      [0, 1],
      [1, 17],
      [2, 137],
      [3, 697],
    ] as const) {
      const values = bandNeighbours(0xbeef, radius);
      assert.equal(values.length, count);
      assert.equal(new Set(values).size, count);
      for (const v of values) {
        assert.ok(v >= 0 && v <= 0xffff);
        assert.ok(hammingDistance(v.toString(16).padStart(16, '0'), 'beef'.padStart(16, '0')) <= radius);
      }
    }
  });

  it('finds every hash within the distance: one band is always within floor(distance / 4) bits', () => {
    for (let distance = 0; distance <= MAX_DISTANCE; distance++) {
      const radius = Math.floor(distance / BANDS);
      for (let i = 0; i < 300; i++) {
        const a = randomHash();
        const b = flip(a, distance);
        assert.equal(hammingDistance(a, b), distance);
        const probes = bandsOf(a).map((band) => new Set(bandNeighbours(band, radius)));
        assert.ok(
          bandsOf(b).some((band, k) => probes[k]!.has(band)),
          `${b} is ${distance} bits from ${a} but no band of it is probed`,
        );
      }
    }
  });
});
