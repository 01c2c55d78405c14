import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { largeJpeg } from '../fixtures/images.ts';
import { api, cli, createCustomer, settled, startTestServer, type TestServer } from './harness.ts';

const BIN = fileURLToPath(new URL('../../bin/imagelake.js', import.meta.url));

/**
 * `imagelake upload` sends large files over tus and, killed mid-file, resumes where the server
 * stopped when it is run again, from its state file.
 */
describe('imagelake upload over tus', () => {
  let t: TestServer;
  let folder: string;

  before(async () => {
    t = await startTestServer();
    folder = await mkdtemp(join(tmpdir(), 'imagelake-tus-cli-'));
  });
  after(async () => {
    await t.stop();
    await rm(folder, { recursive: true, force: true });
  });

  it('killed mid-file, resumes from the offset the server kept when run again', async () => {
    const customer = await createCustomer(t.url, 'Cli');
    const photo = await largeJpeg(60_000_000);
    const path = join(folder, 'big.jpg');
    await writeFile(path, photo);
    const state = join(folder, 'state.json');
    const args = [
      'upload',
      '--customer',
      customer.apiKey,
      '--tus-over',
      '1MiB',
      '--tus-state',
      state,
      '--quiet',
      path,
    ];
    const env = { ...process.env, IMAGELAKE_URL: t.url };

    const first = spawn(process.execPath, [BIN, ...args], { env, stdio: 'ignore' });
    const tusDir = join(t.dataDir, 'lake', 'tus');
    // Killed as soon as the server holds some of the bytes, but not all.
    for (;;) {
      const names = await readdir(tusDir).catch(() => [] as string[]);
      const bytes = names.find((n) => !n.includes('.'));
      const size = bytes ? (await stat(join(tusDir, bytes)).catch(() => undefined))?.size : undefined;
      if (size && size > 0) break;
      assert.equal(first.exitCode, null, 'the upload finished before it could be interrupted');
      await new Promise((r) => setTimeout(r, 5));
    }
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    const remembered = JSON.parse(await readFile(state, 'utf8'));
    const [entry] = Object.values(remembered) as Array<{ uploadUrl: string }>;
    assert.ok(entry?.uploadUrl, 'the state file holds the unfinished upload');
    const head = await fetch(entry.uploadUrl, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${customer.apiKey}`, 'tus-resumable': '1.0.0' },
    });
    const kept = Number(head.headers.get('upload-offset'));
    assert.ok(kept > 0 && kept < photo.length, `the server kept ${kept} of ${photo.length} bytes`);

    const again = await cli(args, { IMAGELAKE_URL: t.url });
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /1 accepted, 0 duplicate, 0 rejected, 0 failed/);
    // The same upload was finished (its URL now names the image), not a second one started.
    const finished = await fetch(entry.uploadUrl, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${customer.apiKey}`, 'tus-resumable': '1.0.0' },
    });
    const id = finished.headers.get('imagelake-image-id');
    assert.ok(id);
    assert.deepEqual(
      JSON.parse((await readFile(state, 'utf8')) || '{}'),
      {},
      'a finished upload leaves the state file',
    );
    const image = await settled(t.url, customer.apiKey, id, 120_000);
    assert.equal(image.checksum, createHash('sha256').update(photo).digest('hex'));
    const { body } = await api(t.url, customer.apiKey, 'GET', '/v1/images');
    assert.equal(body.images.length, 1);

    // Run once more: the same bytes land nothing twice.
    const third = await cli(args, { IMAGELAKE_URL: t.url });
    assert.match(third.out, /0 accepted, 1 duplicate/);
  });
});
