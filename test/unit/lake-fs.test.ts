import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { FsLake, writeAll } from '../../src/lake/fs.ts';
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

describe('the filesystem lake on a disk that fills up', () => {
  /** A file handle that takes at most `take` bytes a call, then fails with `failAfter` calls made. */
  function shortWrites(take: number, failAfter = Number.POSITIVE_INFINITY) {
    const chunks: Buffer[] = [];
    let calls = 0;
    return {
      chunks,
      handle: {
        writev: async (buffers: Buffer[]) => {
          if (++calls > failAfter)
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          const taken = Buffer.concat(buffers).subarray(0, take);
          chunks.push(Buffer.from(taken));
          return { bytesWritten: taken.length };
        },
      },
    };
  }

  it('writes again what a write did not take, until every byte is there, in order', async () => {
    const body = [Buffer.alloc(100_000, 1), Buffer.alloc(5, 2), Buffer.alloc(70_000, 3)];
    const { handle, chunks } = shortWrites(65_536);
    assert.equal(await writeAll(handle, body), 170_005);
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat(body));
    assert.equal(chunks.length, 3);
  });

  it('fails with the disk when it is full, rather than taking the first answer for the whole', async () => {
    const { handle } = shortWrites(65_536, 1);
    await assert.rejects(writeAll(handle, [Buffer.alloc(345_687)]), { code: 'ENOSPC' });
  });

  it('fails when a write takes nothing and says nothing, rather than trying forever', async () => {
    const { handle } = shortWrites(0);
    await assert.rejects(writeAll(handle, [Buffer.alloc(10)]), /took no more bytes \(0 of 10/);
  });

  // A real full disk: a small tmpfs, which only root may mount (skipped elsewhere).
  const mountable = (() => {
    if (process.getuid?.() !== 0) return false;
    const dir = mkdtempSync(join(tmpdir(), 'imagelake-tmpfs-probe-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
      execFileSync('umount', [dir], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  })();

  it('refuses an upload that does not fit, leaving neither the object nor its temporary file, and stores the next that fits whole', {
    skip: !mountable && 'needs root, to mount a small tmpfs',
  }, async () => {
    const root = await mkdtemp(join(tmpdir(), 'imagelake-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', root]);
    try {
      const lake = new FsLake(join(root, 'lake'));
      const stream = (bytes: Buffer) => Readable.from([bytes.subarray(0, 200_000), bytes.subarray(200_000)]);
      const big = randomBytes(700_000);
      await assert.rejects(lake.put('raw/day/big.jpg', stream(big)), { code: 'ENOSPC' });
      assert.equal(await lake.head('raw/day/big.jpg'), undefined);
      assert.deepEqual(await readdir(join(root, 'lake', 'raw', 'day')), []);
      const fits = randomBytes(300_000);
      assert.equal(await lake.put('raw/day/fits.jpg', stream(fits)), 300_000);
      assert.deepEqual(await lake.getBuffer('raw/day/fits.jpg'), fits);
    } finally {
      execFileSync('umount', [root]);
      rmSync(root, { recursive: true, force: true });
    }
  });
});
