// How robust the perceptual hash is, on real photos: each photo of the corpus against its resized
// (50%), re-encoded (JPEG q60, WebP), slightly cropped (5%) and brightness-shifted copies, and against
// every other photo. Prints the distance distributions and the precision and recall at each distance,
// which is what IMAGELAKE_NEAR_DISTANCE's default is chosen from.
//
//   node bench/phash-robustness.ts [FOLDER] [--limit 74]
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh. Hashes are computed the way processing
// computes them (src/processing/fingerprint-image.ts). Some corpus files are the same picture at other
// sizes or crops (Kay-1080x1920 and Kay-5120x2880): pairs of one name are left out of "different".
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp, { type Sharp } from 'sharp';
import { loadConfig } from '../src/config/config.ts';
import { fingerprintImage } from '../src/processing/fingerprint-image.ts';
import { hammingDistance } from '../src/processing/phash.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { limit: { type: 'string', default: '1000' } },
});

function corpus(): string {
  if (positionals[0]) return positionals[0];
  const script = fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url));
  if (!existsSync(script)) throw new Error('no corpus: pass a folder of photos');
  return execFileSync('bash', [script], { encoding: 'utf8' }).trim();
}

function listImages(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? listImages(join(dir, e.name))
        : /\.(jpe?g|png)$/i.test(e.name)
          ? [join(dir, e.name)]
          : [],
    )
    .sort();
}

/** The picture a corpus file shows: its name without the number, the size and the extension. */
function pictureOf(file: string): string {
  return basename(file)
    .replace(/^\d+-/, '')
    .replace(/\.[a-z]+$/i, '')
    .replace(/([_-]\d+x\d+|_contents_screenshot)$/, '');
}

type Transform = (image: Sharp, width: number, height: number) => Sharp;
const crop =
  (left: number, top: number): Transform =>
  (image, width, height) =>
    image.extract({
      left: Math.round(width * left),
      top: Math.round(height * top),
      width: Math.floor(width * 0.95),
      height: Math.floor(height * 0.95),
    });
/** Each copy is made from the upright original, as a customer's own tools would make it. */
export const TRANSFORMS: Record<string, Transform> = {
  'resize 50%': (image, width) => image.resize(Math.round(width / 2)).jpeg({ quality: 90 }),
  'jpeg q60': (image) => image.jpeg({ quality: 60 }),
  webp: (image) => image.webp({ quality: 75 }),
  'crop 5% (edges)': (image, width, height) => crop(0.025, 0.025)(image, width, height).jpeg({ quality: 90 }),
  'crop 5% (corner)': (image, width, height) => crop(0.05, 0.05)(image, width, height).jpeg({ quality: 90 }),
  'brighter 20%': (image) => image.modulate({ brightness: 1.2 }).jpeg({ quality: 90 }),
  'darker 20%': (image) => image.modulate({ brightness: 0.8 }).jpeg({ quality: 90 }),
  'resize 50% + jpeg q60': (image, width) => image.resize(Math.round(width / 2)).jpeg({ quality: 60 }),
};

const MASTER_EDGE = 2560;
const config = loadConfig({});
const limits = { maxPixels: config.limits.maxPixels, maxFrames: config.limits.maxFrames };
const files = listImages(corpus()).slice(0, Number(values.limit));
console.log(`${files.length} photos; hashing each and ${Object.keys(TRANSFORMS).length} copies of each`);

interface Photo {
  file: string;
  picture: string;
  hash: string;
  flat: boolean;
  copies: Record<string, string>;
}
const photos: Photo[] = [];
const started = performance.now();
for (const file of files) {
  const bytes = readFileSync(file);
  const { phash: hash, flat } = await fingerprintImage(bytes, limits);
  // Copies are made from the upright photo at most MASTER_EDGE on its long edge (the corpus goes to
  // 5640 px: re-encoding each at full size would take most of the run); the original's hash is of the file.
  const upright = await sharp(bytes, { limitInputPixels: false })
    .autoOrient()
    // As a viewer shows it: transparency over white (processing hashes it so). A JPEG copy of the raw
    // RGBA would show whatever colour lies under the transparent pixels, another picture.
    .flatten({ background: '#ffffff' })
    .resize({ width: MASTER_EDGE, height: MASTER_EDGE, fit: 'inside', withoutEnlargement: true })
    .toBuffer({ resolveWithObject: true });
  const { width, height } = upright.info;
  const copies: Record<string, string> = {};
  for (const [name, transform] of Object.entries(TRANSFORMS)) {
    const copy = await transform(sharp(upright.data), width, height).toBuffer();
    copies[name] = (await fingerprintImage(copy, limits)).phash;
  }
  photos.push({ file, picture: pictureOf(file), hash, flat, copies });
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
  same[name] = photos.map((p) => hammingDistance(p.hash, p.copies[name]!));
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
  return `min ${s[0]} p50 ${at(50)} p95 ${at(95)} p99 ${at(99)} max ${s.at(-1)} (n=${s.length})`;
};
console.log('distance of each copy to its original:');
for (const [name, d] of Object.entries(same)) console.log(`  ${name.padEnd(24)} ${describe(d)}`);
console.log(`same picture, other file (other size or crop in the corpus): ${describe(samePicture)}`);
console.log(`different photos:                                          ${describe(different)}`);
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
