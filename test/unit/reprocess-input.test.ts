import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImageRow } from '../../src/catalog/schema.ts';
import { FsLake } from '../../src/lake/fs.ts';
import { storedInput } from '../../src/processing/jobs/reprocess-image.ts';
import { parseSpecs } from '../../src/processing/processors/spec.ts';

let root: string;
let lake: FsLake;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-reprocess-input-'));
  lake = new FsLake(root);
});
after(() => rm(root, { recursive: true, force: true }));

const spec = (entry: Record<string, unknown>) =>
  parseSpecs(
    [{ name: 'p', version: '1', fields: {}, ...entry }],
    root,
    { timeoutMs: 1000, concurrency: 1 },
    'test',
  )[0]!;

const image = {
  metadata: {
    width: 640,
    height: 480,
    format: 'jpeg',
    processors: { p: { old: true } },
    labels: { p: ['cat'] },
    processorErrors: {},
  },
  renditions: [
    { name: 'preview', format: 'webp', width: 640, height: 480, bytes: 4, key: 'renditions/x/preview.webp' },
  ],
} as unknown as ImageRow;

describe('a reprocess input from what the first processing stored', () => {
  it("gives a command the original and the built-in metadata, without the processors' results", async () => {
    const original = Buffer.from('original');
    const input = await storedInput(lake, image, async () => original, spec({ command: ['true'] }));
    assert.equal(input?.original, original);
    assert.equal(input?.preview, undefined);
    assert.deepEqual(input?.metadata, { width: 640, height: 480, format: 'jpeg' });
  });

  it('gives a preview processor the stored preview, and nothing when the lake lacks it', async () => {
    const preview = spec({ url: 'http://127.0.0.1:1/', input: 'preview' });
    assert.equal(await storedInput(lake, image, async () => Buffer.from('o'), preview), undefined);
    await lake.put('renditions/x/preview.webp', Buffer.from('webp'), { contentType: 'image/webp' });
    const input = await storedInput(lake, image, async () => Buffer.from('o'), preview);
    assert.equal(input?.preview?.toString(), 'webp');
  });

  it('leaves a module to the pipeline: it needs the decoded pixels', async () => {
    const module = spec({ module: join(root, 'p.ts') });
    assert.equal(await storedInput(lake, image, async () => Buffer.from('o'), module), undefined);
  });
});
