import assert from 'node:assert/strict';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { FsLake } from '../../src/lake/fs.ts';
import { lakeContract } from '../lake/contract.ts';

lakeContract(
  'filesystem',
  async () => new FsLake(join(await mkdtemp(join(tmpdir(), 'imagelake-lake-')), 'lake')),
);

describe('the filesystem lake refused a body', () => {
  it('closes the temporary file and removes it when the body is not a stream at all', async () => {
    const root = join(await mkdtemp(join(tmpdir(), 'imagelake-lake-')), 'lake');
    const lake = new FsLake(root);
    const open = async () => (await readdir('/proc/self/fd')).length;
    const before = await open();
    for (let i = 0; i < 50; i++)
      await assert.rejects(lake.put('raw/a/b.jpg', undefined as unknown as Readable));
    // A few descriptors come and go with the runtime; 50 leaked ones would not.
    assert.ok((await open()) - before < 10, `descriptors went from ${before} to ${await open()}`);
    assert.deepEqual(await readdir(join(root, 'raw', 'a')), []);
  });
});
