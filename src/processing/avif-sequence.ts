import { readFile } from 'node:fs/promises';
import decode, { init } from '@jsquash/avif/decode.js';
import sharp, { type Sharp } from 'sharp';
import { AppError } from '../errors.ts';

/**
 * An animated AVIF with no still image (brand avis, no primary item) has only its frames, in an
 * ISO BMFF track, which sharp's libvips does not read. libavif does: the @jsquash/avif WebAssembly
 * build decodes the first frame of such a sequence. Its size comes from the track header first, so
 * the pixel limit is checked before anything is decoded.
 */

/** The boxes directly inside `data[start, end)`, as [type, payload start, box end]. */
function* boxes(data: Buffer, start: number, end: number): Generator<[string, number, number]> {
  for (let at = start; at + 8 <= end; ) {
    let size = data.readUInt32BE(at);
    let header = 8;
    if (size === 1 && at + 16 <= end) {
      size = Number(data.readBigUInt64BE(at + 8));
      header = 16;
    } else if (size === 0) size = end - at;
    if (size < header || at + size > end) return;
    yield [data.toString('latin1', at + 4, at + 8), at + header, at + size];
    at += size;
  }
}

const child = (data: Buffer, type: string, start: number, end: number) => {
  for (const box of boxes(data, start, end)) if (box[0] === type) return box;
  return undefined;
};

/** The picture size of the sequence's first visual track (its track header), or undefined. */
export function sequenceSize(input: Buffer): { width: number; height: number } | undefined {
  const moov = child(input, 'moov', 0, input.length);
  if (!moov) return undefined;
  for (const [type, start, end] of boxes(input, moov[1], moov[2])) {
    if (type !== 'trak') continue;
    const tkhd = child(input, 'tkhd', start, end);
    if (!tkhd) continue;
    // Full box: version 1 has 64-bit times and duration; width and height (16.16) end the box.
    const at = tkhd[1] + (input[tkhd[1]] === 1 ? 88 : 76);
    if (at + 8 > tkhd[2]) continue;
    const width = input.readUInt32BE(at) >>> 16;
    const height = input.readUInt32BE(at + 4) >>> 16;
    if (width && height) return { width, height };
  }
  return undefined;
}

let ready: Promise<void> | undefined;

/** The first frame, as RGBA pixels for sharp. */
export async function decodeAvifSequence(input: Buffer, maxPixels: number): Promise<Sharp> {
  ready ??= readFile(new URL(import.meta.resolve('@jsquash/avif/codec/dec/avif_dec.wasm'))).then(
    (wasmBinary) => init({ wasmBinary }),
  );
  await ready;
  const broken = (why: string) =>
    new AppError(
      'CORRUPT_IMAGE',
      `The first frame of the AVIF image sequence could not be decoded (${why}).`,
    );
  let frame: ImageData | null;
  try {
    frame = await decode(
      input.buffer.slice(input.byteOffset, input.byteOffset + input.byteLength) as ArrayBuffer,
    );
  } catch (error) {
    throw broken(String((error as Error)?.message ?? error).slice(0, 200));
  }
  if (!frame) throw broken('no picture came out');
  if (frame.width * frame.height > maxPixels)
    throw new AppError(
      'TOO_MANY_PIXELS',
      `${frame.width}x${frame.height} is over the limit of ${maxPixels} pixels.`,
    );
  const { data } = frame;
  return sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), {
    raw: { width: frame.width, height: frame.height, channels: 4 },
    limitInputPixels: maxPixels,
  });
}
