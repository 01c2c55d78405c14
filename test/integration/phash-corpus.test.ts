import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { before, describe, it } from 'node:test';
import { corpusFolder, fingerprintPhoto, listImages, type Photo } from '../../bench/corpus.ts';
import { DEFAULT_NEAR_DISTANCE } from '../../src/config/config.ts';
import { hammingDistance } from '../../src/processing/phash.ts';

// The perceptual hash on real photos (the corpus of ../shared/corpus/fetch.sh, fetched once): its
// eight smallest JPEGs, each a different picture, and their copies. bench/phash-robustness.ts
// measures the whole corpus and prints the distributions; this pins what the README promises.
const SAMPLE = 8;
const WITHIN = ['resize 50%', 'jpeg q60', 'webp', 'darker 20%', 'resize 50% + jpeg q60'];
// Measured on the whole corpus at distance 10: 95.6% of 5% crops and 97.1% of brighter copies are
// within it (a few photos with large flat areas move more); a sample must not do much worse.
const MOSTLY = ['crop 5% (edges)', 'brighter 20%'];

describe('the perceptual hash on real photos', () => {
  let photos: Photo[];
  before(
    async () => {
      const files = listImages(corpusFolder(undefined))
        .filter((f) => /\.jpe?g$/i.test(f))
        .sort((a, b) => statSync(a).size - statSync(b).size)
        .slice(0, SAMPLE);
      photos = [];
      for (const file of files) photos.push(await fingerprintPhoto(file, [...WITHIN, ...MOSTLY]));
      assert.equal(new Set(photos.map((p) => p.picture)).size, SAMPLE, 'each a different picture');
    },
    { timeout: 120_000 },
  );

  it(`keeps resized, re-encoded and darkened copies within ${DEFAULT_NEAR_DISTANCE} bits`, () => {
    for (const photo of photos)
      for (const copy of WITHIN) {
        const d = hammingDistance(photo.hash, photo.copies[copy]!);
        assert.ok(d <= DEFAULT_NEAR_DISTANCE, `${basename(photo.file)}, ${copy}: ${d} bits`);
      }
  });

  it(`keeps most 5%-cropped and brightened copies within ${DEFAULT_NEAR_DISTANCE} bits`, () => {
    for (const copy of MOSTLY) {
      const within = photos.filter((p) => hammingDistance(p.hash, p.copies[copy]!) <= DEFAULT_NEAR_DISTANCE);
      assert.ok(within.length >= SAMPLE - 1, `${copy}: ${within.length} of ${SAMPLE} within`);
    }
  });

  it(`keeps different photos, and their copies, more than ${DEFAULT_NEAR_DISTANCE} bits apart`, () => {
    for (const a of photos)
      for (const b of photos) {
        if (a === b) continue;
        for (const hash of [a.hash, ...Object.values(a.copies)]) {
          const d = hammingDistance(hash, b.hash);
          assert.ok(d > DEFAULT_NEAR_DISTANCE, `${basename(a.file)} ~ ${basename(b.file)}: ${d} bits`);
        }
      }
  });
});
