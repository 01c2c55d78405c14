import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sequenceSize } from '../../src/processing/avif-sequence.ts';
import {
  gifCanvas,
  isAvifSequence,
  readTiff,
  stillOfAvifSequence,
  tiffVariant,
} from '../../src/processing/variants.ts';

/** An ftyp box with these brands (major first, then the minor version, then the compatible ones). */
function ftyp(major: string, ...compatible: string[]): Buffer {
  const box = Buffer.alloc(16 + 4 * compatible.length);
  box.writeUInt32BE(box.length, 0);
  box.write(`ftyp${major}`, 4, 'latin1');
  for (const [i, b] of compatible.entries()) box.write(b, 16 + 4 * i, 'latin1');
  return Buffer.concat([box, Buffer.alloc(16)]);
}

describe('variants read from headers', () => {
  it('an animated AVIF with a still image is read as that image; one without has none', () => {
    const withStill = ftyp('avis', 'avif', 'avis', 'msf1', 'miaf');
    assert.equal(isAvifSequence(withStill), true);
    const still = stillOfAvifSequence(withStill)!;
    assert.equal(still.subarray(8, 12).toString('latin1'), 'avif');
    assert.equal(withStill.subarray(8, 12).toString('latin1'), 'avis', 'the input itself is left as it was');
    assert.equal(stillOfAvifSequence(ftyp('avis', 'avis', 'msf1')), undefined);
    assert.equal(isAvifSequence(ftyp('avif', 'avif', 'mif1')), false);
  });

  it("an image sequence's picture size is read from its track header (version 0 and 1)", () => {
    const box = (type: string, ...parts: Buffer[]) => {
      const body = Buffer.concat(parts);
      const head = Buffer.alloc(8);
      head.writeUInt32BE(8 + body.length, 0);
      head.write(type, 4, 'latin1');
      return Buffer.concat([head, body]);
    };
    const tkhd = (version: number, width: number, height: number) => {
      const body = Buffer.alloc(version === 1 ? 96 : 84);
      body[0] = version;
      body.writeUInt32BE(width << 16, body.length - 8);
      body.writeUInt32BE(height << 16, body.length - 4);
      return box('tkhd', body);
    };
    const file = (...traks: Buffer[]) =>
      Buffer.concat([
        box('ftyp', Buffer.from('avis\0\0\0\0avismsf1', 'latin1')),
        box('moov', ...traks.map((t) => box('trak', t))),
      ]);
    // An audio-like track of no size comes first; the picture's track is the one with a size.
    assert.deepEqual(sequenceSize(file(tkhd(0, 0, 0), tkhd(0, 97, 61))), { width: 97, height: 61 });
    assert.deepEqual(sequenceSize(file(tkhd(1, 4000, 3000))), { width: 4000, height: 3000 });
    assert.equal(sequenceSize(ftyp('avis', 'avis')), undefined, 'no moov box');
    assert.equal(sequenceSize(file(tkhd(0, 97, 61)).subarray(0, 60)), undefined, 'cut short');
  });

  it("a GIF's canvas is its logical screen", () => {
    const gif = Buffer.from('GIF89a\x28\x00\x1e\x00\x00\x00\x00', 'latin1');
    assert.deepEqual(gifCanvas(gif), { width: 40, height: 30 });
    assert.equal(gifCanvas(Buffer.from('PNG')), undefined);
  });

  it('names a TIFF variant in words, and reads no TIFF from other bytes', () => {
    assert.equal(readTiff(Buffer.from('not a tiff at all')), undefined);
    assert.equal(readTiff(Buffer.from('II*\x00\xff\xff\xff\xff', 'latin1')), undefined);
    const t = {
      width: 1,
      height: 1,
      compression: 34925,
      photometric: 8,
      bits: 12,
      samples: 3,
      planar: true,
      tiled: true,
    };
    assert.equal(
      tiffVariant(t as Parameters<typeof tiffVariant>[0]),
      'TIFF, CIELAB, 3 × 12-bit samples, LZMA compression, planar, tiled',
    );
  });
});
