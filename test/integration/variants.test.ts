import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { api, createCustomer, settled, startTestServer, type TestServer, upload } from './harness.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
// The project's Python (Pillow, numpy) and libtiff's tiffcp write the variants, here and now.
const python = execFileSync('bash', [join(root, 'scripts/services/python'), 'path'], {
  encoding: 'utf8',
}).trim();

type Made = { name: string; file: string; width: number; height: number };

/** The mean colour of a rendition, to tell pixels decoded right from a grey or black square. */
async function meanOf(t: TestServer, key: string, url: string): Promise<number[]> {
  const response = await fetch(`${t.url}${url}`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(response.status, 200);
  const { channels } = await sharp(Buffer.from(await response.arrayBuffer())).stats();
  return channels.slice(0, 3).map((c) => c.mean);
}

describe('every variant of a claimed format', () => {
  let t: TestServer;
  let dir: string;
  let customer: { id: string; apiKey: string };
  const made = new Map<string, Made>();
  const images = new Map<string, any>();

  before(
    async () => {
      execFileSync('bash', [join(root, 'scripts/services/imaging'), 'ensure'], { stdio: 'inherit' });
      dir = await mkdtemp(join(tmpdir(), 'imagelake-variants-'));
      const lines = execFileSync(python, [join(root, 'test/fixtures/variants.py'), dir], {
        encoding: 'utf8',
      });
      for (const line of lines.trim().split('\n')) {
        const m = JSON.parse(line) as Made;
        made.set(m.name, m);
      }
      t = await startTestServer();
      customer = await createCustomer(t.url, 'Variants');
      for (const m of made.values()) {
        const landed = await upload(t.url, customer.apiKey, await readFile(join(dir, m.file)));
        assert.equal(landed.status, 202, `${m.name}: ${JSON.stringify(landed.body)}`);
        images.set(m.name, landed.body.id);
      }
      for (const [name, id] of images) images.set(name, await settled(t.url, customer.apiKey, id));
      // The references: the same picture as plain 8-bit RGB and 16-bit grey TIFFs.
      for (const name of ['rgb8', 'grey16']) {
        const landed = await upload(t.url, customer.apiKey, await readFile(join(dir, `${name}.tif`)));
        images.set(name, await settled(t.url, customer.apiKey, landed.body.id));
      }
    },
    { timeout: 300_000 },
  );
  after(async () => {
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const decoded = [
    'tiff-bigtiff',
    'tiff-planar-8bit-raw',
    'tiff-planar-8bit-lzw',
    'tiff-planar-16bit-raw',
    'tiff-planar-16bit-lzw',
    'tiff-tiled-8bit-lzw',
    'tiff-tiled-16bit-raw',
    'tiff-lzma',
    'tiff-lzma-tiled',
    'tiff-cielab',
    'tiff-12bit',
    'tiff-float32',
    'tiff-old-jpeg',
    'gif-frame-outside',
    'avif-sequence',
    'avif-sequence-no-still',
  ];
  // Grey variants are compared with the grey reference, colour ones with the RGB one.
  const grey = new Set(['tiff-tiled-16bit-raw', 'tiff-12bit', 'tiff-float32']);

  for (const name of decoded) {
    it(`${name}: processed, upright size, renditions with the picture's colours`, async () => {
      const m = made.get(name)!;
      const image = images.get(name);
      assert.equal(image.status, 'processed', `${name}: ${JSON.stringify(image.error)}`);
      assert.equal(image.format, name.split('-')[0]);
      assert.deepEqual([image.width, image.height], [m.width, m.height]);
      assert.deepEqual(
        image.renditions.map((r: any) => [r.name, r.width, r.height]),
        [
          ['thumb', m.width, m.height],
          ['preview', m.width, m.height],
        ],
      );
      // The GIF is the picture moved inside its canvas: its colours are not the reference's.
      if (name.startsWith('gif')) return;
      const reference = images.get(grey.has(name) ? 'grey16' : 'rgb8');
      const want = await meanOf(t, customer.apiKey, reference.renditions[1].url);
      const got = await meanOf(t, customer.apiKey, image.renditions[1].url);
      for (const [i, c] of got.entries())
        assert.ok(
          Math.abs(c - want[i]!) < 6,
          `${name}: channel ${i} mean ${c.toFixed(1)}, reference ${want[i]!.toFixed(1)}`,
        );
    });
  }

  // Each file that ends failed: its code, and what its message must say.
  const refused = [
    // A valid container whose variant nothing here decodes: UNSUPPORTED_VARIANT, naming the variant.
    ['tiff-zstd', 'UNSUPPORTED_VARIANT', /TIFF, RGB, 3 × 8-bit samples, Zstandard compression/],
    // An LZMA strip that expands past the pixels the image holds is stopped there.
    ['tiff-lzma-bomb', 'CORRUPT_IMAGE', /strip 0 .*more than the 17751 bytes/],
    ['tiff-lzma-truncated', 'CORRUPT_IMAGE', /TIFF with LZMA compression: strip 0 could not be decompressed/],
    ['avif-sequence-no-track', 'CORRUPT_IMAGE', /AVIF image sequence has no track with a picture size/],
    ['avif-sequence-zeroed', 'CORRUPT_IMAGE', /first frame of the AVIF image sequence could not be decoded/],
  ] as const;
  for (const [name, code, message] of refused) {
    it(`${name}: failed with ${code}, the message saying why`, async () => {
      const image = images.get(name);
      assert.equal(image.status, 'failed');
      assert.equal(image.error.code, code);
      assert.match(image.error.message, message);
    });
  }

  it('broken bytes in a TIFF container stay CORRUPT_IMAGE', async () => {
    const whole = await readFile(join(dir, 'rgb8.tif'));
    const broken = Buffer.concat([whole.subarray(0, 8), Buffer.alloc(64, 0xff)]);
    const landed = await upload(t.url, customer.apiKey, broken);
    const image = await settled(t.url, customer.apiKey, landed.body.id);
    assert.equal(image.status, 'failed');
    assert.equal(image.error.code, 'CORRUPT_IMAGE');
    const failures = (await api(t.url, customer.apiKey, 'GET', '/v1/failures')).body;
    assert.deepEqual(failures.codes.map((g: any) => [g.code, g.images]).sort(), [
      ['CORRUPT_IMAGE', 5],
      ['UNSUPPORTED_VARIANT', 1],
    ]);
  });
});
