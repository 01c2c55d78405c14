// The corpus the near-duplicate benchmarks share (bench/phash-robustness.ts, bench/similar.ts): its
// photos, which picture each shows, the copies a customer would make of one, and their fingerprints
// computed the way processing computes them (src/processing/fingerprint-image.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp, { type Sharp } from 'sharp';
import { loadConfig } from '../src/config/config.ts';
import { fingerprintImage } from '../src/processing/fingerprint-image.ts';

/**
 * The folder given, or where ../shared/corpus/fetch.sh keeps the corpus (its default folder), or what
 * that script fetches.
 */
export function corpusFolder(given: string | undefined): string {
  if (given) return given;
  const cached = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'imagelake-corpus');
  if (existsSync(join(cached, 'MANIFEST'))) return cached;
  const script = fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url));
  if (!existsSync(script)) throw new Error('no corpus: pass a folder of photos');
  return execFileSync('bash', [script], { encoding: 'utf8' }).trim();
}

export function listImages(dir: string): string[] {
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

/**
 * The picture a corpus file shows: its name without the number, the size and the extension. Some
 * files are one picture at other sizes or crops (Kay-1080x1920 and Kay-5120x2880).
 */
export function pictureOf(file: string): string {
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
/** The copies a customer's own tools make of a photo, each from the upright photo. */
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

// Copies are made from the upright photo at most MASTER_EDGE on its long edge (the corpus goes to
// 5640 px: re-encoding each at full size would take most of the run); the original's hash is of the file.
const MASTER_EDGE = 2560;
const config = loadConfig({});
const limits = { maxPixels: config.limits.maxPixels, maxFrames: config.limits.maxFrames };

export interface Photo {
  file: string;
  picture: string;
  sha256: string;
  hash: string;
  flat: boolean;
  /** By transform name: the copy's perceptual hash. */
  copies: Record<string, string>;
}

/** A photo's fingerprints and those of its copies (the transforms named, or all). */
export async function fingerprintPhoto(file: string, transforms = Object.keys(TRANSFORMS)): Promise<Photo> {
  return fingerprintBytes(readFileSync(file), file, pictureOf(file), transforms);
}

/** The same for a photo in memory (`file` and `picture` only name it). */
export async function fingerprintBytes(
  bytes: Buffer,
  file: string,
  picture: string,
  transforms = Object.keys(TRANSFORMS),
): Promise<Photo> {
  const { phash: hash, flat, sha256 } = await fingerprintImage(bytes, limits);
  const upright = await sharp(bytes, { limitInputPixels: false })
    .autoOrient()
    // As a viewer shows it: transparency over white (processing hashes it so). A JPEG copy of the raw
    // RGBA would show whatever colour lies under the transparent pixels, another picture.
    .flatten({ background: '#ffffff' })
    .resize({ width: MASTER_EDGE, height: MASTER_EDGE, fit: 'inside', withoutEnlargement: true })
    .toBuffer({ resolveWithObject: true });
  const { width, height } = upright.info;
  const copies: Record<string, string> = {};
  for (const name of transforms) {
    const copy = await TRANSFORMS[name]!(sharp(upright.data), width, height).toBuffer();
    copies[name] = (await fingerprintImage(copy, limits)).phash;
  }
  return { file, picture, sha256, hash, flat, copies };
}
