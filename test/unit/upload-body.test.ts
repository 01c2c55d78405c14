import assert from 'node:assert/strict';
import { PassThrough, type Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError } from '../../src/errors.ts';
import { guardedBody } from '../../src/ingest/body.ts';

async function drain(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const code = (expected: string) => (error: unknown) => error instanceof AppError && error.code === expected;

describe("an upload's body under its idle watchdog", () => {
  it('passes every byte through, in order', async () => {
    const source = new PassThrough();
    const body = guardedBody(source, 1000);
    source.write(Buffer.from('abc'));
    source.write(Buffer.from('def'));
    source.end(Buffer.from('g'));
    assert.equal((await drain(body)).toString(), 'abcdefg');
  });

  it('fails with BODY_TIMEOUT when no bytes arrive in time, and leaves the source alone', async () => {
    const source = new PassThrough();
    const body = guardedBody(source, 50);
    source.write(Buffer.from('abc'));
    await assert.rejects(drain(body), code('BODY_TIMEOUT'));
    assert.equal(source.destroyed, false);
  });

  it('does not count the time the reader holds the body back', async () => {
    const source = new PassThrough();
    const body = guardedBody(source, 50);
    // More than the body buffers: the source is paused until the reader reads on.
    const big = Buffer.alloc(256 * 1024, 1);
    source.write(big);
    await new Promise((resolve) => body.once('readable', resolve));
    await sleep(150);
    const read = drain(body);
    source.end(Buffer.from('end'));
    assert.equal((await read).length, big.length + 3);
  });

  it('fails with BODY_INCOMPLETE when the connection breaks mid-body', async () => {
    const source = new PassThrough();
    const body = guardedBody(source, 1000);
    source.write(Buffer.from('abc'));
    setImmediate(() => source.destroy(new Error('ECONNRESET')));
    await assert.rejects(drain(body), code('BODY_INCOMPLETE'));
  });

  it('fails with BODY_INCOMPLETE when the connection closes without an error before the end', async () => {
    const source = new PassThrough();
    const body = guardedBody(source, 1000);
    source.write(Buffer.from('abc'));
    setImmediate(() => source.destroy());
    await assert.rejects(drain(body), code('BODY_INCOMPLETE'));
  });
});
