import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, createCustomer, settled, startTestServer, type TestServer } from './harness.ts';

/**
 * The tus endpoint as the protocol describes it, and as garbage finds it: it is kept out of the
 * OpenAPI document (a protocol endpoint; see api/routes/tus.ts), so this stands in for the fuzzer:
 * no request may be answered with a 5xx.
 */
describe('tus protocol and garbage', () => {
  let t: TestServer;
  let key: string;
  let otherKey: string;

  before(async () => {
    t = await startTestServer({ IMAGELAKE_MAX_BYTES: '8MiB', IMAGELAKE_UPLOAD_SESSIONS: '3' });
    key = (await createCustomer(t.url, 'Proto')).apiKey;
    otherKey = (await createCustomer(t.url, 'Neighbour')).apiKey;
  });
  after(() => t.stop());

  const tus = (path: string, init: RequestInit & { headers?: Record<string, string> }, as = key) =>
    fetch(`${t.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${as}`, 'tus-resumable': '1.0.0', ...init.headers },
    });
  const create = (length: number, as = key) =>
    tus('/v1/tus', { method: 'POST', headers: { 'upload-length': String(length) } }, as);

  it('announces the version, the extensions and Tus-Max-Size (IMAGELAKE_MAX_BYTES)', async () => {
    const response = await fetch(`${t.url}/v1/tus`, { method: 'OPTIONS' });
    assert.ok(response.status === 200 || response.status === 204);
    assert.equal(response.headers.get('tus-version'), '1.0.0');
    assert.equal(response.headers.get('tus-max-size'), String(8 * 1024 * 1024));
    const extensions = response.headers.get('tus-extension')!.split(',');
    for (const extension of ['creation', 'creation-with-upload', 'termination', 'expiration'])
      assert.ok(extensions.includes(extension), `${extension} in ${extensions}`);
  });

  it('lands an upload sent whole with its creation (creation-with-upload)', async () => {
    const photo = await jpeg({ width: 800, height: 600 });
    const response = await tus('/v1/tus', {
      method: 'POST',
      headers: {
        'upload-length': String(photo.length),
        'upload-metadata': `filename ${Buffer.from('whole.jpg').toString('base64')}`,
        'content-type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(photo),
    });
    assert.equal(response.status, 201);
    assert.equal(Number(response.headers.get('upload-offset')), photo.length);
    const id = response.headers.get('imagelake-image-id');
    assert.ok(id);
    assert.equal((await settled(t.url, key, id)).filename, 'whole.jpg');
  });

  it('refuses what it cannot take with a 4xx, never a 5xx', async () => {
    const upload = (await create(1000)).headers.get('location')!;
    const path = new URL(upload).pathname;
    const cases: Array<[string, Promise<Response>, number]> = [
      [
        'no Tus-Resumable',
        fetch(`${t.url}/v1/tus`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'upload-length': '10' },
        }),
        412,
      ],
      [
        'no key',
        fetch(`${t.url}/v1/tus`, {
          method: 'POST',
          headers: { 'tus-resumable': '1.0.0', 'upload-length': '10' },
        }),
        401,
      ],
      ['an admin key', tus('/v1/tus', { method: 'POST', headers: { 'upload-length': '10' } }, ADMIN), 403],
      ['a negative length', tus('/v1/tus', { method: 'POST', headers: { 'upload-length': '-1' } }), 400],
      [
        'a length that is no number',
        tus('/v1/tus', { method: 'POST', headers: { 'upload-length': 'lots' } }),
        400,
      ],
      ['over Tus-Max-Size', create(9 * 1024 * 1024), 413],
      ['an empty upload', create(0), 400],
      ['no length at all', tus('/v1/tus', { method: 'POST' }), 400],
      ['a deferred length', tus('/v1/tus', { method: 'POST', headers: { 'upload-defer-length': '1' } }), 400],
      [
        'metadata that is not base64 pairs',
        tus('/v1/tus', {
          method: 'POST',
          headers: { 'upload-length': '10', 'upload-metadata': 'filename !!!, , x y z' },
        }),
        400,
      ],
      [
        'a filename with a NUL',
        tus('/v1/tus', {
          method: 'POST',
          headers: {
            'upload-length': '10',
            'upload-metadata': `filename ${Buffer.from('a\u0000b').toString('base64')}`,
          },
        }),
        400,
      ],
      [
        'a bad priority',
        tus('/v1/tus', {
          method: 'POST',
          headers: { 'upload-length': '10', 'imagelake-priority': 'urgent' },
        }),
        400,
      ],
      ['an id that is no id', tus('/v1/tus/..%2F..%2Fetc', { method: 'HEAD' }), 404],
      ['an unknown id', tus(`/v1/tus/${'0'.repeat(32)}`, { method: 'HEAD' }), 404],
      [
        'PATCH without Upload-Offset',
        tus(path, {
          method: 'PATCH',
          headers: { 'content-type': 'application/offset+octet-stream' },
          body: 'x',
        }),
        403,
      ],
      [
        'PATCH with another content type',
        tus(path, {
          method: 'PATCH',
          headers: { 'upload-offset': '0', 'content-type': 'text/plain' },
          body: 'x',
        }),
        400,
      ],
      [
        'PATCH at the wrong offset',
        tus(path, {
          method: 'PATCH',
          headers: { 'upload-offset': '5', 'content-type': 'application/offset+octet-stream' },
          body: 'x',
        }),
        409,
      ],
      [
        'PATCH past the length',
        tus(path, {
          method: 'PATCH',
          headers: { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
          body: new Uint8Array(2000),
        }),
        413,
      ],
      [
        'PATCH with a negative offset',
        tus(path, {
          method: 'PATCH',
          headers: { 'upload-offset': '-3', 'content-type': 'application/offset+octet-stream' },
          body: 'x',
        }),
        400,
      ],
      ['GET of an upload', tus(path, { method: 'GET' }), 405],
    ];
    for (const [what, pending, expected] of cases) {
      const response = await pending;
      const body = await response.text();
      assert.ok(response.status < 500, `${what}: ${response.status} ${body}`);
      assert.equal(response.status, expected, `${what}: ${body}`);
    }
  });

  it("caps a customer's unfinished uploads (IMAGELAKE_UPLOAD_SESSIONS) without touching another's", async () => {
    // One is open from the case above; two more reach the limit of three.
    for (let i = 0; i < 2; i++) assert.equal((await create(100)).status, 201);
    const refused = await create(100);
    assert.equal(refused.status, 429);
    assert.equal((await refused.json()).error.code, 'UPLOAD_LIMIT');
    assert.equal((await create(100, otherKey)).status, 201);
  });
});
