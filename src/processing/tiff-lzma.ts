import { decompress as lzma2 } from '@napi-rs/lzma/lzma2';
import { AppError } from '../errors.ts';
import type { TiffLayout } from './variants.ts';

/** TIFF compression 34925: each strip or tile is a whole .xz stream, as libtiff writes it. */
export const LZMA = 34925;

const DELTA = 0x03;
const LZMA2 = 0x21;
/** Bytes of the integrity check after each block, by the check type of the stream's flags. */
const CHECK_BYTES = [0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64];

/** Reads the .xz format's variable-length integers from a buffer, keeping its place. */
class Reader {
  private readonly view: Buffer;
  at: number;
  constructor(view: Buffer, at: number) {
    this.view = view;
    this.at = at;
  }
  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 63; shift += 7) {
      if (this.at >= this.view.length) throw new Error('the stream is cut short');
      const byte = this.view[this.at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('a number in the stream is too long');
  }
  byte(): number {
    if (this.at >= this.view.length) throw new Error('the stream is cut short');
    return this.view[this.at++]!;
  }
}

interface Block {
  /** Where the block's compressed data starts, and how long it is. */
  start: number;
  length: number;
  uncompressed: number;
  /** The delta filter's distance, when the block has one in front of LZMA2. */
  delta: number | undefined;
}

/**
 * The blocks of one .xz stream as libtiff writes it (a delta filter, optional, in front of LZMA2),
 * from its index (the list of blocks with their sizes the format requires at its end) and each
 * block's header. Only sizes and filters are read here; nothing is decompressed.
 */
function blocksOf(view: Buffer): Block[] {
  if (
    view.length < 24 ||
    view.readUInt32BE(0) !== 0xfd377a58 ||
    view.toString('latin1', view.length - 2) !== 'YZ'
  )
    throw new Error('not a whole .xz stream');
  const check = CHECK_BYTES[view[7]! & 0x0f]!;
  const indexSize = (view.readUInt32LE(view.length - 8) + 1) * 4;
  const index = new Reader(view, view.length - 12 - indexSize);
  if (index.at < 12 || index.byte() !== 0) throw new Error('its index is missing');
  const count = index.varint();
  const blocks: Block[] = [];
  let at = 12;
  for (let i = 0; i < count; i++) {
    const unpadded = index.varint();
    const uncompressed = index.varint();
    const headerSize = (view[at]! + 1) * 4;
    const header = new Reader(view, at + 1);
    const flags = header.byte();
    if (flags & 0x40) header.varint();
    if (flags & 0x80) header.varint();
    let delta: number | undefined;
    let last = 0;
    for (let f = 0; f <= (flags & 0x03); f++) {
      last = header.varint();
      const size = header.varint();
      const props = view.subarray(header.at, header.at + size);
      header.at += size;
      if (last === DELTA) delta = props[0]! + 1;
      else if (last !== LZMA2) throw new Error(`filter ${last} is not one libtiff writes`);
    }
    if (last !== LZMA2) throw new Error('its last filter is not LZMA2');
    const length = unpadded - headerSize - check;
    if (length < 0 || at + headerSize + length > view.length) throw new Error('a block reaches past its end');
    blocks.push({ start: at + headerSize, length, uncompressed, delta });
    at += headerSize + length + ((4 - (length % 4)) % 4) + check;
  }
  return blocks;
}

/**
 * The bytes an LZMA2 stream's chunks say they hold, from their headers alone: each chunk names its
 * uncompressed size (up to 2 MiB) and its compressed size, and the decoder writes no more.
 */
function lzma2Size(data: Buffer): number {
  let total = 0;
  let at = 0;
  for (;;) {
    if (at >= data.length) throw new Error('the LZMA2 data is cut short');
    const control = data[at]!;
    if (control === 0x00) return total;
    if (control === 0x01 || control === 0x02) {
      if (at + 3 > data.length) throw new Error('the LZMA2 data is cut short');
      const size = data.readUInt16BE(at + 1) + 1;
      total += size;
      at += 3 + size;
    } else if (control >= 0x80) {
      if (at + 5 > data.length) throw new Error('the LZMA2 data is cut short');
      total += (control & 0x1f) * 65536 + data.readUInt16BE(at + 1) + 1;
      at += 5 + (control >= 0xc0 ? 1 : 0) + data.readUInt16BE(at + 3) + 1;
    } else throw new Error(`an LZMA2 chunk starts with ${control}`);
  }
}

/**
 * One .xz stream, decompressed: each block's LZMA2 data through @napi-rs/lzma (off the JavaScript
 * thread), then its delta filter undone here (a byte plus the one `distance` before it). A stream
 * whose index declares more than `limit` bytes is refused before anything is decompressed, and what
 * comes out of each block must be what its index declared.
 */
async function inflateXz(stream: Uint8Array, limit: number): Promise<Buffer> {
  const view = Buffer.from(stream.buffer, stream.byteOffset, stream.byteLength);
  const blocks = blocksOf(view);
  const declared = blocks.reduce((n, b) => n + b.uncompressed, 0);
  if (declared > limit)
    throw new Error(`a strip declares ${declared} bytes, more than the ${limit} bytes it can hold`);
  const parts: Buffer[] = [];
  for (const block of blocks) {
    const data = view.subarray(block.start, block.start + block.length);
    // The chunks' own sizes bound what the decoder writes: an index that lies is caught here.
    const chunked = lzma2Size(data);
    if (chunked !== block.uncompressed)
      throw new Error(`a block's chunks hold ${chunked} bytes where its index says ${block.uncompressed}`);
    const raw = await lzma2(data);
    if (raw.length !== block.uncompressed)
      throw new Error(`a block gave ${raw.length} bytes where its index says ${block.uncompressed}`);
    if (block.delta)
      for (let i = block.delta; i < raw.length; i++) raw[i] = (raw[i]! + raw[i - block.delta]!) & 0xff;
    parts.push(raw);
  }
  return Buffer.concat(parts);
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
