import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { AppError } from '../../src/errors.ts';
import { sniff } from '../../src/ingest/sniff.ts';
import type { ProcessTask } from '../../src/processing/context.ts';
import { runPipeline } from '../../src/processing/pipeline.ts';
import { ProcessingPool } from '../../src/processing/pool.ts';
import { avif, gif, heic, jpeg, png, pngBomb, tiff, webp } from '../fixtures/images.ts';

function task(input: Buffer, overrides: Partial<ProcessTask> = {}): ProcessTask {
  return {
    imageId: '00000000-0000-4000-8000-000000000001',
    customerId: '00000000-0000-4000-8000-000000000002',
    source: 'http',
    format: sniff(input) ?? 'jpeg',
    checksum: createHash('sha256').update(input).digest('hex'),
    input,
    limits: { maxPixels: 50_000_000, maxFrames: 100 },
    ...overrides,
  };
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AppError, `expected an AppError, got ${error}`);
    return error.code;
  }
  return 'no error';
}

describe('pipeline on every accepted format', () => {
  const cases: Array<[string, () => Promise<Buffer> | Buffer, number, number]> = [
    ['jpeg', () => jpeg({ width: 640, height: 480 }), 640, 480],
    ['png', () => png({ width: 500, height: 400 }), 500, 400],
    ['png with alpha', () => png({ width: 300, height: 200, alpha: true }), 300, 200],
    ['16-bit png', () => png({ width: 300, height: 200, sixteenBit: true }), 300, 200],
    ['webp', webp, 500, 300],
    ['avif', avif, 400, 300],
    ['tiff', tiff, 300, 400],
    ['animated gif', () => gif(3), 120, 80],
    ['heic', heic, 320, 200],
  ];
  for (const [name, make, width, height] of cases) {
    it(`${name}: metadata, two WebP renditions, fingerprints`, async () => {
      const input = await make();
      const result = await runPipeline(task(input));
      assert.equal(result.metadata.width, width);
      assert.equal(result.metadata.height, height);
      assert.deepEqual(
        result.renditions.map((r) => r.name),
        ['thumb', 'preview'],
      );
      for (const r of result.renditions) {
        const meta = await sharp(r.data).metadata();
        assert.equal(meta.format, 'webp');
        assert.ok(Math.max(meta.width!, meta.height!) <= (r.name === 'thumb' ? 256 : 1280));
        assert.equal(meta.exif, undefined, 'renditions carry no EXIF');
      }
      assert.match(result.fingerprints.phash, /^[0-9a-f]{16}$/);
      assert.equal(result.fingerprints.sha256, createHash('sha256').update(input).digest('hex'));
    });
  }

  it('encodes an image no larger than the thumbnail once, at the better quality, for both renditions', async () => {
    const small = await runPipeline(task(await png({ width: 200, height: 120 })));
    const [thumb, preview] = small.renditions;
    assert.deepEqual([thumb!.width, thumb!.height], [200, 120]);
    assert.deepEqual(thumb!.data, preview!.data, 'the same WebP serves both');
    assert.equal((await sharp(thumb!.data).metadata()).width, 200);
    // Past the thumbnail's edge the two differ in size, and each gets its own encode.
    const large = await runPipeline(task(await png({ width: 500, height: 400 })));
    assert.deepEqual(
      large.renditions.map((r) => [r.name, r.width, r.height]),
      [
        ['thumb', 256, 205],
        ['preview', 500, 400],
      ],
    );
  });

  it('reports frames of an animation', async () => {
    const result = await runPipeline(task(await gif(4)));
    assert.equal(result.metadata.pages, 4);
  });

  it('reads camera EXIF from a phone HEIC, GPS included, and strips it from renditions', async () => {
    const result = await runPipeline(task(heic()));
    assert.equal(result.metadata.exif?.make, 'Apple');
    assert.equal(result.metadata.exif?.model, 'iPhone 15 Pro');
    assert.equal(result.metadata.exif?.hasGps, true);
    for (const r of result.renditions) assert.equal((await sharp(r.data).metadata()).exif, undefined);
  });
});

describe('orientation', () => {
  for (const orientation of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`EXIF orientation ${orientation} gives upright dimensions and upright renditions`, async () => {
      const input = await jpeg({ width: 600, height: 400, orientation, gps: true });
      const result = await runPipeline(task(input));
      const swapped = orientation >= 5;
      assert.equal(result.metadata.orientation, orientation);
      assert.equal(result.metadata.width, swapped ? 400 : 600);
      assert.equal(result.metadata.height, swapped ? 600 : 400);
      assert.equal(result.metadata.exif?.hasGps, true);
      const preview = await sharp(result.renditions.find((r) => r.name === 'preview')!.data).metadata();
      assert.equal(preview.width, swapped ? 400 : 600);
      assert.equal(
        preview.orientation,
        undefined,
        'renditions need no orientation tag: the pixels are upright',
      );
      assert.equal(preview.exif, undefined);
    });
  }

  it('turns the pixels, not just the numbers', async () => {
    // The test picture has a white disc on the left; with orientation 6 (rotate 90 CW) it must be on top.
    const result = await runPipeline(task(await jpeg({ width: 600, height: 400, orientation: 6 })));
    const preview = result.renditions.find((r) => r.name === 'preview')!;
    const { data, info } = await sharp(preview.data).greyscale().raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => data[Math.round(y) * info.width + Math.round(x)]!;
    assert.ok(at(info.width * 0.6, info.height * 0.3) > 220, 'the disc is near the top after rotation');
  });
});

describe('bad input fails with a stable code', () => {
  it('a decompression bomb is refused before decoding', async () => {
    const bomb = pngBomb();
    assert.ok(bomb.length < 10_000);
    assert.equal(
      await code(runPipeline(task(bomb, { limits: { maxPixels: 100_000_000, maxFrames: 10 } }))),
      'TOO_MANY_PIXELS',
    );
  });

  it('too many frames', async () => {
    assert.equal(
      await code(runPipeline(task(await gif(5), { limits: { maxPixels: 1e8, maxFrames: 4 } }))),
      'TOO_MANY_FRAMES',
    );
  });

  it('a truncated JPEG', async () => {
    const whole = await jpeg({ width: 800, height: 600 });
    assert.equal(
      await code(runPipeline(task(whole.subarray(0, Math.floor(whole.length * 0.6))))),
      'CORRUPT_IMAGE',
    );
  });

  it('a truncated PNG', async () => {
    const whole = await png({ width: 800, height: 600 });
    assert.equal(
      await code(runPipeline(task(whole.subarray(0, Math.floor(whole.length * 0.5))))),
      'CORRUPT_IMAGE',
    );
  });

  it('garbage behind a valid signature', async () => {
    const junk = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(5000, 7)]);
    assert.equal(await code(runPipeline(task(junk))), 'CORRUPT_IMAGE');
  });

  it('bytes that changed since landing', async () => {
    const input = await jpeg();
    assert.equal(await code(runPipeline(task(input, { checksum: 'a'.repeat(64) }))), 'CHECKSUM_MISMATCH');
  });
});

describe('the pool', () => {
  it('a task that runs past the time limit is stopped and the pool keeps working', async () => {
    const pool = new ProcessingPool({ threads: 1, timeoutMs: 1 });
    try {
      const hung = await pool.run(task(await jpeg({ width: 3000, height: 2000 })));
      assert.equal(hung.ok, false);
      assert.equal(!hung.ok && hung.code, 'PROCESSING_TIMEOUT');
    } finally {
      await pool.close();
    }
    const fresh = new ProcessingPool({ threads: 1, timeoutMs: 30_000 });
    try {
      assert.equal(
        (await fresh.run(task(await jpeg()))).ok,
        true,
        'the next image is processed by a fresh thread',
      );
    } finally {
      await fresh.close();
    }
  });

  it('waiting tasks take a thread interactive first, and express tasks do not wait', async () => {
    const pool = new ProcessingPool({ threads: 1, expressThreads: 1, timeoutMs: 30_000 });
    try {
      const big = await jpeg({ width: 3000, height: 2000 });
      const done: string[] = [];
      const run = (name: string, lane: { priority: 'interactive' | 'bulk'; express: boolean }) =>
        pool.run(task(big), { lane }).then((answer) => {
          assert.equal(answer.ok, true);
          done.push(name);
        });
      // The first bulk task takes the one thread; the second waits; the interactive one, sent last,
      // is let in before it; the express one runs beside them on its own thread.
      await Promise.all([
        run('bulk 1', { priority: 'bulk', express: false }),
        run('bulk 2', { priority: 'bulk', express: false }),
        run('interactive', { priority: 'interactive', express: false }),
        run('express', { priority: 'interactive', express: true }),
      ]);
      assert.ok(
        done.indexOf('interactive') < done.indexOf('bulk 2'),
        `finished in the order ${done.join(', ')}`,
      );
      assert.ok(
        done.indexOf('express') < done.indexOf('interactive'),
        `finished in the order ${done.join(', ')}`,
      );
    } finally {
      await pool.close();
    }
  });

  it("counts the pipeline's CPU, libvips's threads included", async () => {
    const pool = new ProcessingPool({ threads: 1, timeoutMs: 30_000 });
    try {
      const input = await jpeg({ width: 4000, height: 3000 });
      const answer = await pool.run(task(input));
      assert.ok(answer.ok);
      // Decoding 12 megapixels and making the renditions takes well over 50 ms of CPU anywhere; the
      // pipeline thread's own counter saw a few milliseconds of it.
      assert.ok((answer.result.cpuMs ?? 0) > 50, `cpuMs ${answer.result.cpuMs}`);
    } finally {
      await pool.close();
    }
  });

  it('returns the decoded pixels only when asked for', async () => {
    assert.equal((await runPipeline(task(await jpeg()))).decoded, undefined);
    const kept = await runPipeline(task(await jpeg(), { keepDecoded: true }));
    assert.ok(
      kept.decoded &&
        kept.decoded.data.length === kept.decoded.width * kept.decoded.height * kept.decoded.channels,
    );
  });
});
