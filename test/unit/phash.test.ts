import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { hammingDistance, isFlat, phashFromGrey32 } from '../../src/processing/phash.ts';
import { drawPhoto } from '../fixtures/images.ts';

async function hashOf(image: Buffer): Promise<string> {
  const grey = await sharp(image)
    .flatten({ background: '#fff' })
    .greyscale()
    .resize(32, 32, { fit: 'fill' })
    .raw()
    .toBuffer();
  return phashFromGrey32(grey);
}

describe('perceptual hash', () => {
  it('is 64 bits and stable', async () => {
    const image = await (await drawPhoto(400, 300, 1)).png().toBuffer();
    const a = await hashOf(image);
    assert.match(a, /^[0-9a-f]{16}$/);
    assert.equal(a, await hashOf(image));
  });

  it('keeps near-duplicates close and different images apart', async () => {
    const original = await (await drawPhoto(800, 600, 1)).png().toBuffer();
    const reencoded = await sharp(original).resize(300).jpeg({ quality: 50 }).toBuffer();
    const other = await sharp(original).rotate(90).png().toBuffer();
    const base = await hashOf(original);
    assert.ok(
      hammingDistance(base, await hashOf(reencoded)) <= 6,
      'a resized, recompressed copy stays within 6 bits',
    );
    assert.ok(hammingDistance(base, await hashOf(other)) > 12, 'a rotated image is far');
  });

  it('tells a flat image (nothing to hash) from one with structure', async () => {
    const grey = async (image: Buffer) =>
      sharp(image)
        .flatten({ background: '#fff' })
        .greyscale()
        .resize(32, 32, { fit: 'fill' })
        .raw()
        .toBuffer();
    const blank = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#f0f0f0' } })
      .png()
      .toBuffer();
    // Transparent everywhere: shown on white, it is a white page.
    const clear = await sharp({ create: { width: 300, height: 200, channels: 4, background: '#00000000' } })
      .png()
      .toBuffer();
    assert.equal(isFlat(await grey(blank)), true);
    assert.equal(isFlat(await grey(clear)), true);
    assert.equal(isFlat(await grey(await (await drawPhoto(300, 200, 1)).png().toBuffer())), false);
  });

  it('refuses input of the wrong size', () => {
    assert.throws(() => phashFromGrey32(new Uint8Array(10)), /1024/);
  });
});
