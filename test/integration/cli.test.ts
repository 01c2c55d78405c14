import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jpeg, png, webp } from '../fixtures/images.ts';
import { ADMIN, api, cli, startTestServer, type TestServer } from './harness.ts';

let t: TestServer;
let folder: string;
before(async () => {
  t = await startTestServer();
  folder = await mkdtemp(join(tmpdir(), 'imagelake-cli-'));
  await mkdir(join(folder, 'nested'));
  await writeFile(join(folder, 'a.jpg'), await jpeg({ seed: 1 }));
  await writeFile(join(folder, 'nested', 'b.png'), await png());
  await writeFile(join(folder, 'nested', 'c.webp'), await webp());
  await writeFile(join(folder, 'notes.txt'), 'not an image');
  await writeFile(join(folder, '.hidden.jpg'), await jpeg({ seed: 2 }));
});
after(async () => {
  await t.stop();
  await rm(folder, { recursive: true, force: true });
});

describe('imagelake CLI', () => {
  let apiKey = '';

  it('customers create prints the id and the key', async () => {
    const { code, out } = await cli(['customers', 'create', 'Initech', '--url', t.url, '--token', ADMIN]);
    assert.equal(code, 0, out);
    apiKey = /api key: (il_live_\S+)/.exec(out)?.[1] ?? '';
    assert.ok(apiKey, out);
  });

  it('upload walks folders, summarizes accepted, duplicate and rejected, and waits for processing', async () => {
    const first = await cli(['upload', '--customer', apiKey, '--url', t.url, '--wait', folder]);
    assert.equal(first.code, 1, `a rejected file makes the exit code non-zero:\n${first.out}`);
    assert.match(first.out, /4 files, .* 3 accepted, 0 duplicate, 1 rejected, 0 failed/);
    assert.match(first.out, /rejected .*notes\.txt: UNSUPPORTED_FORMAT/);
    assert.match(first.out, /3 processed, 0 failed/);

    const again = await cli([
      'upload',
      '--customer',
      apiKey,
      '--url',
      t.url,
      join(folder, 'a.jpg'),
      join(folder, 'nested'),
    ]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /3 files, .* 0 accepted, 3 duplicate, 0 rejected, 0 failed/);
    const listed = (await api(t.url, apiKey, 'GET', '/v1/images')).body.images;
    assert.equal(listed.length, 3);
    assert.deepEqual(listed.map((i: { filename: string }) => i.filename).sort(), [
      'a.jpg',
      'b.png',
      'c.webp',
    ]);
  });

  it('says what to do when the server is not there', async () => {
    const { code, out } = await cli(['customers', 'list', '--url', 'http://127.0.0.1:9', '--token', ADMIN]);
    assert.equal(code, 1);
    assert.match(out, /Cannot reach imagelake at http:\/\/127\.0\.0\.1:9.*Is it running\?/);
  });

  it('says what is missing', async () => {
    const { code, out } = await cli(['upload', folder], { IMAGELAKE_API_KEY: '' });
    assert.equal(code, 2);
    assert.match(out, /needs the customer API key/);
  });
});
