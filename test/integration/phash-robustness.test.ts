import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { fingerprintBytes, type Photo } from '../../bench/corpus.ts';
import { DEFAULT_NEAR_DISTANCE } from '../../src/config/config.ts';
import { hammingDistance } from '../../src/processing/phash.ts';
import { drawScene } from '../fixtures/images.ts';

// The perceptual hash on pictures drawn here (test/fixtures/images.ts drawScene: each seed its own
// picture), and the copies a customer's tools make of them. bench/phash-robustness.ts measures the
// real photo corpus and prints the distributions; this pins what the README promises without it.
const SAMPLE = 8;
const WITHIN = ['resize 50%', 'jpeg q60', 'webp', 'darker 20%', 'resize 50% + jpeg q60'];
// Measured on the corpus at distance 10: 95.6% of 5% crops and 97.1% of brighter copies are within
// it (a few photos with large flat areas move more); a sample must not do much worse.
const MOSTLY = ['crop 5% (edges)', 'brighter 20%'];

describe('the perceptual hash on pictures and their copies', () => {
  let photos: Photo[];
  before(
    async () => {
      photos = [];
      for (let seed = 1; seed <= SAMPLE; seed++)
        photos.push(
          await fingerprintBytes(await drawScene(seed), `scene ${seed}`, `scene ${seed}`, [
            ...WITHIN,
            ...MOSTLY,
          ]),
        );
    },
    { timeout: 120_000 },
  );

  it(`keeps resized, re-encoded and darkened copies within ${DEFAULT_NEAR_DISTANCE} bits`, () => {
    for (const photo of photos)
      for (const copy of WITHIN) {
        const d = hammingDistance(photo.hash, photo.copies[copy]!);
        assert.ok(d <= DEFAULT_NEAR_DISTANCE, `${photo.file}, ${copy}: ${d} bits`);
      }
  });

  it(`keeps most 5%-cropped and brightened copies within ${DEFAULT_NEAR_DISTANCE} bits`, () => {
    for (const copy of MOSTLY) {
      const within = photos.filter((p) => hammingDistance(p.hash, p.copies[copy]!) <= DEFAULT_NEAR_DISTANCE);
      assert.ok(within.length >= SAMPLE - 1, `${copy}: ${within.length} of ${SAMPLE} within`);
    }
  });

  it(`keeps different pictures, and their copies, more than ${DEFAULT_NEAR_DISTANCE} bits apart`, () => {
    for (const a of photos)
      for (const b of photos) {
        if (a === b) continue;
        for (const hash of [a.hash, ...Object.values(a.copies)]) {
          const d = hammingDistance(hash, b.hash);
          assert.ok(d > DEFAULT_NEAR_DISTANCE, `${a.file} ~ ${b.file}: ${d} bits`);
        }
      }
  });
});
