import { finished } from 'node:stream/promises';
import { createDecompressStream } from '@napi-rs/lzma/xz';
import { AppError } from '../errors.ts';
import type { TiffLayout } from './variants.ts';

/** TIFF compression 34925: each strip or tile is a whole .xz stream, as libtiff writes it. */
export const LZMA = 34925;

/**
 * One .xz stream, decompressed, refused as soon as it grows past `limit` bytes. libtiff puts a delta
 * filter in front of LZMA2, which @napi-rs/lzma (lzma-rust2) reads. Its stream decoder runs off the
 * JavaScript thread and stops when its reader stops reading, so a strip crafted to expand to
 * gigabytes costs no more than `limit` bytes before it is refused.
 */
async function inflateXz(stream: Uint8Array, limit: number): Promise<Buffer> {
  const decoder = createDecompressStream();
  const chunks: Buffer[] = [];
  let length = 0;
  let over = false;
  decoder.on('data', (chunk: Buffer) => {
    length += chunk.length;
    if (length > limit) {
      over = true;
      decoder.destroy();
    } else chunks.push(chunk);
  });
  decoder.end(stream);
  try {
    // Rejects on a broken stream, and (premature close) on the one destroyed above.
    await finished(decoder);
  } catch (error) {
    if (!over) throw error;
  }
  if (over) throw new Error(`a strip decompresses to more than the ${limit} bytes it can hold`);
  return Buffer.concat(chunks, length);
}

/**
 * The same TIFF with its LZMA strips or tiles decompressed: the input with the raw pixel data
 * appended, and a copy of its first directory pointing at that data as uncompressed, which UTIF.js
 * then decodes like any other (predictor, tiles and byte order included).
 */
export async function uncompressLzma(
  input: Buffer,
  t: TiffLayout,
): Promise<{ input: Buffer; layout: TiffLayout }> {
  const ifd = t.ifd;
  const offsets = (t.tiled ? ifd.t324 : ifd.t273) as number[] | undefined;
  const counts = (t.tiled ? ifd.t325 : ifd.t279) as number[] | undefined;
  const corrupt = (why: string) => new AppError('CORRUPT_IMAGE', `TIFF with LZMA compression: ${why}.`);
  if (!offsets || !counts || offsets.length !== counts.length) throw corrupt('its strips are not listed');
  const bitsPerPixel = t.bits * (t.planar ? 1 : t.samples);
  const limit = t.tiled
    ? Math.ceil(((ifd.t322 as number[])[0]! * bitsPerPixel) / 8) * (ifd.t323 as number[])[0]!
    : Math.ceil((t.width * bitsPerPixel) / 8) *
      Math.min((ifd.t278 as number[] | undefined)?.[0] ?? t.height, t.height);
  const parts: Buffer[] = [input];
  const newOffsets: number[] = [];
  let at = input.length;
  for (const [i, offset] of offsets.entries()) {
    const end = offset + counts[i]!;
    if (end > input.length) throw corrupt(`strip ${i} reaches past the end of the file`);
    let raw: Buffer;
    try {
      raw = await inflateXz(input.subarray(offset, end), limit);
    } catch (error) {
      throw corrupt(
        `strip ${i} could not be decompressed (${String((error as Error)?.message ?? error).slice(0, 200)})`,
      );
    }
    parts.push(raw);
    newOffsets.push(at);
    at += raw.length;
  }
  const rawCounts = parts.slice(1).map((p) => p.length);
  const copy = { ...ifd, t259: [1] } as typeof ifd;
  if (t.tiled) Object.assign(copy, { t324: newOffsets, t325: rawCounts });
  else Object.assign(copy, { t273: newOffsets, t279: rawCounts });
  return { input: Buffer.concat(parts, at), layout: { ...t, compression: 1, ifd: copy } };
}
