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

describe('the filesystem lake writing many objects at once', () => {
  it('shares one folder fsync among the writes into a folder at once, and every one lands', async () => {
    const lake = new FsLake(join(await mkdtemp(join(tmpdir(), 'imagelake-lake-')), 'lake'));
    let syncs = 0;
    const syncDir = Reflect.get(lake, 'syncDir') as (dir: string) => Promise<void>;
    Reflect.set(lake, 'syncDir', async (dir: string) => {
      syncs++;
      // A slow disk: the writes that rename meanwhile wait for the next fsync, one for all of them.
      await new Promise((r) => setTimeout(r, 30));
      await syncDir.call(lake, dir);
    });
    await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        lake.put(`raw/dt=2026-11-29/${i}.bin`, Buffer.from(`object ${i}`)),
      ),
    );
    for (let i = 0; i < 16; i++)
      assert.equal((await lake.getBuffer(`raw/dt=2026-11-29/${i}.bin`)).toString(), `object ${i}`);
    assert.ok(syncs >= 1 && syncs <= 3, `${syncs} folder fsyncs for 16 writes`);
    // A write after the others have their fsync gets one of its own.
    await lake.put('raw/dt=2026-11-29/late.bin', Buffer.from('late'));
    assert.ok(syncs >= 2);
  });

  it('makes a folder again when it was removed since it was made (the purge prunes empty partitions)', async () => {
    const lake = new FsLake(join(await mkdtemp(join(tmpdir(), 'imagelake-lake-')), 'lake'));
    await lake.put('raw/dt=2026-11-28/a.bin', Buffer.from('a'));
    // Another process's purge deletes the object and its emptied partition.
    await new FsLake(lake.root).delete('raw/dt=2026-11-28/a.bin');
    assert.equal(await lake.head('raw/dt=2026-11-28/a.bin'), undefined);
    assert.equal(await lake.put('raw/dt=2026-11-28/b.bin', Buffer.from('bb')), 2);
    assert.equal((await lake.getBuffer('raw/dt=2026-11-28/b.bin')).toString(), 'bb');
  });
});

describe('the filesystem lake deleting many', () => {
  it('removes every file, prunes each folder they emptied up to the lake, and keeps folders still in use', async () => {
    const root = join(await mkdtemp(join(tmpdir(), 'imagelake-lake-')), 'lake');
    const lake = new FsLake(root);
    const keys: string[] = [];
    for (let i = 0; i < 300; i++) {
      keys.push(
        `renditions/dt=2026-01-01/customer=a/${i}/thumb.webp`,
        `renditions/dt=2026-01-01/customer=a/${i}/preview.webp`,
      );
      keys.push(`raw/dt=2026-01-0${1 + (i % 2)}/customer=a/${i}.jpg`);
    }
    for (const key of keys) await lake.put(key, Buffer.from('x'), { durable: false });
    await lake.put('raw/dt=2026-01-02/customer=b/kept.jpg', Buffer.from('x'), { durable: false });
    await lake.deleteMany([...keys, 'raw/dt=2026-01-01/customer=a/absent.jpg']);
    assert.deepEqual(await lake.children(''), ['raw']);
    assert.deepEqual(await lake.children('raw/'), ['dt=2026-01-02']);
    const left: string[] = [];
    for await (const o of lake.list('')) left.push(o.key);
    assert.deepEqual(left, ['raw/dt=2026-01-02/customer=b/kept.jpg']);
  });
});
