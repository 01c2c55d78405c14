import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
