import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { type Lake, LakeNotFound } from '../../src/lake/port.ts';

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The behaviour every lake adapter must have. Run it against each adapter with a fresh, empty lake. */
export function lakeContract(name: string, makeLake: () => Promise<Lake>): void {
  describe(`lake contract: ${name}`, () => {
    it('puts and gets a buffer, and reports its size', async () => {
      const lake = await makeLake();
      const bytes = await lake.put('raw/dt=2026-11-21/customer=a/1.jpg', Buffer.from('hello'));
      assert.equal(bytes, 5);
      assert.equal(await text(await lake.get('raw/dt=2026-11-21/customer=a/1.jpg')), 'hello');
      assert.equal((await lake.getBuffer('raw/dt=2026-11-21/customer=a/1.jpg')).toString(), 'hello');
      assert.equal((await lake.head('raw/dt=2026-11-21/customer=a/1.jpg'))?.bytes, 5);
    });

    it('puts a stream', async () => {
      const lake = await makeLake();
      const bytes = await lake.put('a/stream.bin', Readable.from([Buffer.from('ab'), Buffer.from('cd')]));
      assert.equal(bytes, 4);
      assert.equal(await text(await lake.get('a/stream.bin')), 'abcd');
    });

    it('overwrites atomically', async () => {
      const lake = await makeLake();
      await lake.put('a/x', Buffer.from('first'));
      await lake.put('a/x', Buffer.from('second'));
      assert.equal((await lake.getBuffer('a/x')).toString(), 'second');
    });

    it('leaves nothing behind when a streamed write fails midway', async () => {
      const lake = await makeLake();
      async function* failing() {
        yield Buffer.from('partial');
        throw new Error('client went away');
      }
      await assert.rejects(lake.put('a/broken', Readable.from(failing())), /client went away/);
      assert.equal(await lake.head('a/broken'), undefined);
      const left: string[] = [];
      for await (const o of lake.list('a/')) left.push(o.key);
      assert.deepEqual(left, []);
    });

    it('answers absent keys plainly', async () => {
      const lake = await makeLake();
      assert.equal(await lake.head('nope/x'), undefined);
      await assert.rejects(lake.get('nope/x'), LakeNotFound);
      await assert.rejects(lake.getBuffer('nope/x'), LakeNotFound);
      await lake.delete('nope/x');
    });

    it('lists by prefix in key order, and sub-folders', async () => {
      const lake = await makeLake();
      for (const key of [
        'raw/dt=2026-11-20/customer=a/2.png',
        'raw/dt=2026-11-20/customer=a/1.jpg',
        'raw/dt=2026-11-21/customer=b/3.gif',
        'other/z',
      ]) {
        await lake.put(key, Buffer.from(key));
      }
      const keys: string[] = [];
      for await (const o of lake.list('raw/dt=2026-11-20/')) keys.push(o.key);
      assert.deepEqual(keys, ['raw/dt=2026-11-20/customer=a/1.jpg', 'raw/dt=2026-11-20/customer=a/2.png']);
      assert.deepEqual(await lake.children('raw/'), ['dt=2026-11-20', 'dt=2026-11-21']);
      const all: string[] = [];
      for await (const o of lake.list('raw/')) all.push(o.key);
      assert.equal(all.length, 3);
    });

    it('deletes one and many', async () => {
      const lake = await makeLake();
      await lake.put('d/1', Buffer.from('1'));
      await lake.put('d/2', Buffer.from('2'));
      await lake.put('d/3', Buffer.from('3'));
      await lake.delete('d/1');
      await lake.deleteMany(['d/2', 'd/3', 'd/absent']);
      const left: string[] = [];
      for await (const o of lake.list('d/')) left.push(o.key);
      assert.deepEqual(left, []);
      assert.deepEqual(await lake.children(''), []);
    });

    it('refuses keys that escape the lake', async () => {
      const lake = await makeLake();
      await assert.rejects(lake.put('../escape', Buffer.from('x')));
      await assert.rejects(lake.put('/abs', Buffer.from('x')));
    });
  });
}
