// How robust the perceptual hash is, on real photos: each photo of the corpus against its resized
// (50%), re-encoded (JPEG q60, WebP), slightly cropped (5%) and brightness-shifted copies, and against
// every other photo. Prints the distance distributions and the precision and recall at each distance,
// which is what IMAGELAKE_NEAR_DISTANCE's default is chosen from.
//
//   node bench/phash-robustness.ts [FOLDER] [--limit 74]
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh (bench/corpus.ts). Some corpus files are
// the same picture at other sizes or crops (Kay-1080x1920 and Kay-5120x2880): pairs of one name are
// reported apart, not counted as "different".
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_NEAR_DISTANCE } from '../src/config/config.ts';
import { hammingDistance } from '../src/processing/phash.ts';
import { corpusFolder, fingerprintPhoto, listImages, type Photo, TRANSFORMS } from './corpus.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { limit: { type: 'string', default: '1000' } },
});

const files = listImages(corpusFolder(positionals[0])).slice(0, Number(values.limit));
console.log(`${files.length} photos; hashing each and ${Object.keys(TRANSFORMS).length} copies of each`);

const photos: Photo[] = [];
const started = performance.now();
for (const file of files) {
  photos.push(await fingerprintPhoto(file));
  process.stdout.write(`\r${photos.length}/${files.length} photos hashed`);
}
console.log(` in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);

// A flat photo (one colour once shown on white: phash.ts isFlat) has no perceptual hash worth the
// name; it only ever matches exactly, so it is left out of the near measurement.
const flat = photos.filter((p) => p.flat);
console.log(
  `${flat.length} flat photos, exact duplicates only: ${flat.map((p) => basename(p.file)).join(', ') || 'none'}`,
);
const hashed = photos.filter((p) => !p.flat);
const same: Record<string, number[]> = {};
for (const name of Object.keys(TRANSFORMS))
  same[name] = hashed.map((p) => hammingDistance(p.hash, p.copies[name]!));
// Different photos: every pair of originals, and each photo's copies against every other original.
const different: number[] = [];
const samePicture: number[] = [];
for (let i = 0; i < hashed.length; i++) {
  for (let j = i + 1; j < hashed.length; j++) {
    const [a, b] = [hashed[i]!, hashed[j]!];
    const d = hammingDistance(a.hash, b.hash);
    if (a.picture === b.picture) samePicture.push(d);
    else different.push(d);
  }
}
for (const a of hashed)
  for (const b of hashed)
    if (a.picture !== b.picture)
      for (const h of Object.values(a.copies)) different.push(hammingDistance(h, b.hash));

const describe = (distances: number[]) => {
  const s = [...distances].sort((x, y) => x - y);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
  const within = s.filter((d) => d <= DEFAULT_NEAR_DISTANCE).length;
  return `min ${s[0]} p50 ${at(50)} p95 ${at(95)} p99 ${at(99)} max ${s.at(-1)} (n=${s.length}), within ${DEFAULT_NEAR_DISTANCE}: ${((100 * within) / s.length).toFixed(1)}%`;
};
console.log('distance of each copy to its original:');
for (const [name, d] of Object.entries(same)) console.log(`  ${name.padEnd(24)} ${describe(d)}`);
const worst = hashed
  .map((p) => ({ p, d: Object.values(p.copies).map((h) => hammingDistance(p.hash, h)) }))
  .filter(({ d }) => Math.max(...d) > 10);
console.log(`photos with a copy past 10 bits (${worst.length}):`);
for (const { p, d } of worst) console.log(`  ${basename(p.file)}: ${d.join(' ')}`);
console.log(`same picture, other file (other size or crop in the corpus): ${describe(samePicture)}`);
console.log(`different photos:                                          ${describe(different)}`);
const close: string[] = [];
for (let i = 0; i < hashed.length; i++)
  for (let j = i + 1; j < hashed.length; j++) {
    const [a, b] = [hashed[i]!, hashed[j]!];
    const d = hammingDistance(a.hash, b.hash);
    if (a.picture !== b.picture && d <= DEFAULT_NEAR_DISTANCE)
      close.push(`${basename(a.file)} ~ ${basename(b.file)}: ${d}`);
  }
console.log(`different photos (originals) within ${DEFAULT_NEAR_DISTANCE} bits: ${close.length}`);
for (const pair of close) console.log(`  ${pair}`);
const histogram = new Array(65).fill(0) as number[];
for (const d of different) histogram[d]!++;
console.log(
  `different photos, pairs at distance 0..24: ${histogram
    .slice(0, 25)
    .map((n, d) => `${d}:${n}`)
    .join(' ')}`,
);

const positives = Object.values(same).flat();
console.log('\ndistance  recall (copies found)  precision (found pairs that are copies)  false pairs');
for (let t = 0; t <= 20; t++) {
  const tp = positives.filter((d) => d <= t).length;
  const fp = different.filter((d) => d <= t).length;
  const precision = tp + fp === 0 ? 1 : tp / (tp + fp);
  console.log(
    `${String(t).padStart(8)}  ${((100 * tp) / positives.length).toFixed(1).padStart(20)}%  ${(100 * precision).toFixed(2).padStart(38)}%  ${fp}`,
  );
}
