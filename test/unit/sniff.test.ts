import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sniff } from '../../src/ingest/sniff.ts';
import { avif, gif, heic, jpeg, png, tiff, webp } from '../fixtures/images.ts';

describe('sniff identifies images by their bytes', () => {
  it('knows every accepted format', async () => {
    assert.equal(sniff(await jpeg()), 'jpeg');
    assert.equal(sniff(await png()), 'png');
    assert.equal(sniff(await webp()), 'webp');
    assert.equal(sniff(await gif()), 'gif');
    assert.equal(sniff(await avif()), 'avif');
    assert.equal(sniff(await tiff()), 'tiff');
    assert.equal(sniff(heic()), 'heic');
  });

  it('knows BigTIFF, in either byte order', () => {
    assert.equal(sniff(Buffer.from('II+\x00\x08\x00\x00\x00', 'latin1')), 'tiff');
    assert.equal(sniff(Buffer.from('MM\x00+\x00\x08\x00\x00', 'latin1')), 'tiff');
  });

  it('refuses everything else', () => {
    assert.equal(sniff(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"></svg>')), undefined);
    assert.equal(sniff(Buffer.from('%PDF-1.7\n')), undefined);
    assert.equal(sniff(Buffer.from('BM\x00\x00')), undefined);
    assert.equal(sniff(Buffer.from('')), undefined);
    assert.equal(sniff(Buffer.from([0xff, 0xd8])), undefined);
    // An MP4 video shares the ftyp box with HEIF but not the brands.
    const mp4 = Buffer.alloc(32);
    mp4.writeUInt32BE(24, 0);
    mp4.write('ftypisom', 4, 'latin1');
    mp4.write('isomiso2', 16, 'latin1');
    assert.equal(sniff(mp4), undefined);
  });
});
