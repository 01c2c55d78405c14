// What decoding an LZMA TIFF through the fallback costs (each strip's .xz stream decompressed by
// @napi-rs/lzma, then UTIF.js) against libvips decoding the same picture as an LZW TIFF, in one run.
//
//   node bench/variants.ts [--width 2000] [--height 1500] [--rounds 10]
//
// The pictures are made here: sharp writes a noisy gradient, libtiff's tiffcp (scripts/services/imaging)
// recompresses it, with libtiff's default strips and with one row a strip (the most strips, where the
// per-strip cost of starting a decoder shows).
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { decodeTiffVariant, readTiff } from '../src/processing/variants.ts';

const { values } = parseArgs({
  options: { width: { type: 'string' }, height: { type: 'string' }, rounds: { type: 'string' } },
});
const WIDTH = Number(values.width ?? 2000);
const HEIGHT = Number(values.height ?? 1500);
const ROUNDS = Number(values.rounds ?? 10);

execFileSync('bash', [join(import.meta.dirname, '../scripts/services/imaging'), 'ensure'], {
  stdio: 'inherit',
});
const dir = await mkdtemp(join(tmpdir(), 'imagelake-bench-variants-'));
const source = join(dir, 'source.tif');
await sharp({
  create: {
    width: WIDTH,
    height: HEIGHT,
    channels: 3,
    background: '#4080c0',
    noise: { type: 'gaussian', mean: 128, sigma: 30 },
  },
})
  .tiff({ compression: 'none' })
  .toFile(source);
const tiffcp = async (name: string, ...args: string[]) => {
  execFileSync('tiffcp', [...args, source, join(dir, name)]);
  return readFile(join(dir, name));
};
const lzw = await tiffcp('lzw.tif', '-c', 'lzw');
const lzma = await tiffcp('lzma.tif', '-c', 'lzma');
const lzmaRows = await tiffcp('lzma-rows.tif', '-c', 'lzma', '-r', '1');

async function median(decode: () => Promise<unknown>): Promise<number> {
  await decode();
  const ms: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const start = performance.now();
    await decode();
    ms.push(performance.now() - start);
  }
  return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)]!;
}

const fallback = (input: Buffer) => async () =>
  (await decodeTiffVariant(input, readTiff(input)!, WIDTH * HEIGHT)).raw().toBuffer();
const baseline = await median(() => sharp(lzw).raw().toBuffer());
const strips = await median(fallback(lzma));
const rows = await median(fallback(lzmaRows));
console.log(`${WIDTH}x${HEIGHT} RGB, median of ${ROUNDS} decodes each`);
console.log(`libvips, LZW (baseline):             ${baseline.toFixed(1)} ms`);
console.log(
  `fallback, LZMA, libtiff's strips:    ${strips.toFixed(1)} ms  (${(strips / baseline).toFixed(1)}x)`,
);
console.log(`fallback, LZMA, one row a strip:     ${rows.toFixed(1)} ms  (${(rows / baseline).toFixed(1)}x)`);
await rm(dir, { recursive: true, force: true });
