import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jpeg } from '../fixtures/images.ts';
import { api, createCustomer, startTestServer, type TestServer, until, upload } from './harness.ts';

// Limits small enough to cross in a test. Timeouts are long here: the timeout tests have a server of their own.
let t: TestServer;

before(async () => {
  t = await startTestServer({
    IMAGELAKE_MAX_BYTES: '1MiB',
    IMAGELAKE_UPLOAD_SESSIONS: '3',
    IMAGELAKE_UPLOAD_STAGED_BYTES: '1536KiB',
    IMAGELAKE_UPLOADS_PER_CUSTOMER: '2',
  });
});
after(() => t?.stop());

/** Every file under the lake's staging folder, temporary ones included. */
async function stagedFiles(): Promise<string[]> {
  const dir = join(t.dataDir, 'lake', 'uploads');
  return (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []))
    .filter((e) => e.isFile())
    .map((e) => e.name);
}

async function startUpload(key: string): Promise<{ status: number; body: any; headers: Headers }> {
  return api(t.url, key, 'POST', '/v1/uploads', {});
}

async function put(session: { uploadUrl: string }, key: string, body: Buffer) {
  const response = await fetch(session.uploadUrl, {
    method: 'PUT',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(body),
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** A raw HTTP/1.1 request that sends `head` and then whatever the test writes; resolves with all it got back. */
function rawRequest(
  url: string,
  head: string,
): { socket: Socket; answer: Promise<string>; answered: () => boolean } {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.write(head);
  let received = '';
  socket.on('data', (d) => {
    received += d.toString('latin1');
  });
  const answer = new Promise<string>((resolve) => {
    socket.on('close', () => resolve(received));
    socket.on('error', () => {});
  });
  return { socket, answer, answered: () => received.length > 0 || socket.destroyed };
}

function uploadHead(url: string, key: string, length: number, path = '/v1/images', method = 'POST'): string {
  const { host } = new URL(url);
  return (
    `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${key}\r\n` +
    `Content-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`
  );
}

describe('direct uploads', () => {
  it('refuses a PUT over IMAGELAKE_MAX_BYTES while it streams (413), keeping nothing', async () => {
    const c = await createCustomer(t.url, 'Too big');
    const session = (await startUpload(c.apiKey)).body;
    const big = Buffer.concat([await jpeg({ seed: 5 }), Buffer.alloc(3 * 1024 * 1024, 7)]);
    const refused = await put(session, c.apiKey, big);
    assert.equal(refused.status, 413);
    assert.equal(refused.body.error.code, 'IMAGE_TOO_LARGE');
    assert.equal(await t.server.lake.head(`uploads/${c.id}/${session.id}`), undefined);
    assert.deepEqual(await stagedFiles(), [], 'not even a temporary file stays');
    const complete = await api(t.url, c.apiKey, 'POST', `/v1/uploads/${session.id}/complete`);
    assert.equal(complete.body.error.code, 'UPLOAD_EMPTY');
    // The same session still takes an image that fits.
    const fits = await jpeg({ seed: 6 });
    assert.equal((await put(session, c.apiKey, fits)).status, 200);
    const landed = await api(t.url, c.apiKey, 'POST', `/v1/uploads/${session.id}/complete`);
    assert.equal(landed.status, 202);
    assert.equal(landed.body.bytes, fits.length);
  });

  it('answers an empty PUT with 400 EMPTY_BODY and leaks no file descriptor', async () => {
    const c = await createCustomer(t.url, 'Empty');
    const session = (await startUpload(c.apiKey)).body;
    const emptyPut = async () => {
      const response = await fetch(session.uploadUrl, {
        method: 'PUT',
        headers: { authorization: `Bearer ${c.apiKey}` },
      });
      return { status: response.status, body: (await response.json()) as any };
    };
    // Warm up the connections (HTTP keep-alive, the catalog's pool) before counting.
    for (let i = 0; i < 10; i++) await emptyPut();
    const before = readdirSync('/proc/self/fd').length;
    for (let i = 0; i < 200; i++) {
      const r = await emptyPut();
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'EMPTY_BODY');
    }
    const grown = readdirSync('/proc/self/fd').length - before;
    assert.ok(grown < 10, `${grown} more descriptors open after 200 empty PUTs`);

    // A chunked body with no bytes is just as empty.
    const chunked = await fetch(session.uploadUrl, {
      method: 'PUT',
      headers: { authorization: `Bearer ${c.apiKey}`, 'content-type': 'application/octet-stream' },
      body: new ReadableStream({ start: (controller) => controller.close() }),
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 400);
    assert.equal(((await chunked.json()) as any).error.code, 'EMPTY_BODY');
    assert.deepEqual(await stagedFiles(), []);
  });

  it('limits open sessions and staged bytes per customer; cancelling frees them; other customers are unaffected', async () => {
    const c = await createCustomer(t.url, 'Hoarder');
    const sessions = [];
    for (let i = 0; i < 3; i++) {
      const started = await startUpload(c.apiKey);
      assert.equal(started.status, 201);
      sessions.push(started.body);
    }
    const fourth = await startUpload(c.apiKey);
    assert.equal(fourth.status, 429);
    assert.equal(fourth.body.error.code, 'UPLOAD_LIMIT');
    assert.match(fourth.body.error.message, /DELETE \/v1\/uploads/);
    const other = await createCustomer(t.url, 'Neighbour');
    assert.equal((await startUpload(other.apiKey)).status, 201, "another customer's sessions are its own");

    // 1536 KiB may be staged: 900 KiB fit, another 900 KiB do not.
    const chunk = Buffer.alloc(900 * 1024, 1);
    assert.equal((await put(sessions[0], c.apiKey, chunk)).status, 200);
    const over = await put(sessions[1], c.apiKey, chunk);
    assert.equal(over.status, 429);
    assert.equal(over.body.error.code, 'UPLOAD_LIMIT');
    assert.equal(await t.server.lake.head(`uploads/${c.id}/${sessions[1].id}`), undefined);

    const cancelled = await api(t.url, c.apiKey, 'DELETE', `/v1/uploads/${sessions[0].id}`);
    assert.equal(cancelled.status, 204);
    assert.equal(await t.server.lake.head(`uploads/${c.id}/${sessions[0].id}`), undefined);
    assert.equal(
      (await put(sessions[1], c.apiKey, chunk)).status,
      200,
      'the cancelled bytes no longer count',
    );
    assert.equal((await startUpload(c.apiKey)).status, 201, 'the cancelled session no longer counts');
    assert.equal(
      (await api(t.url, other.apiKey, 'DELETE', `/v1/uploads/${sessions[1].id}`)).status,
      404,
      "a customer cannot cancel another's session",
    );
  });

  it('drops staged bytes that completing refuses, so they do not wait for the session to expire', async () => {
    const c = await createCustomer(t.url, 'Not an image');
    const session = (await startUpload(c.apiKey)).body;
    assert.equal((await put(session, c.apiKey, Buffer.from('plain text, not an image'))).status, 200);
    const refused = await api(t.url, c.apiKey, 'POST', `/v1/uploads/${session.id}/complete`);
    assert.equal(refused.status, 415);
    assert.equal(await t.server.lake.head(`uploads/${c.id}/${session.id}`), undefined);
  });
});

describe('uploads in progress per customer', { timeout: 120_000 }, () => {
  it("answers 429 TOO_MANY_UPLOADS with Retry-After past the limit; another customer's uploads go through", async () => {
    const hog = await createCustomer(t.url, 'Stalls');
    const polite = await createCustomer(t.url, 'Polite');
    const image = await jpeg({ seed: 11 });
    // Two uploads that promise 100,000 bytes, send 5,000 and stop: they hold both of the customer's slots.
    const stall = () => {
      const r = rawRequest(t.url, uploadHead(t.url, hog.apiKey, 100_000));
      r.socket.write(image.subarray(0, 5000));
      return r;
    };
    let stalled = [stall(), stall()];
    const refused = await until('both slots held', async () => {
      // A stalled upload refused because the probe below held a slot at that moment is sent again.
      stalled = stalled.map((s) => (s.answered() ? stall() : s));
      await new Promise((r) => setTimeout(r, 100));
      const r = await upload(t.url, hog.apiKey, image);
      return r.status === 429 ? r : undefined;
    });
    assert.equal(refused.body.error.code, 'TOO_MANY_UPLOADS');
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal((await upload(t.url, polite.apiKey, image)).status, 202, 'another customer is not held up');
    assert.equal((await upload(t.url, hog.apiKey, image)).status, 429, 'the slots are still held');

    // The stalled clients give up: their slots come back.
    for (const s of stalled) s.socket.destroy();
    await until('a slot freed', async () => (await upload(t.url, hog.apiKey, image)).status === 202);
  });
});

// Bounded, so a server that never times a client out fails here instead of hanging the suite.
describe('request timeouts', { timeout: 120_000 }, () => {
  let quick: TestServer;
  before(async () => {
    quick = await startTestServer({
      IMAGELAKE_HEADERS_TIMEOUT: '1s',
      IMAGELAKE_BODY_IDLE_TIMEOUT: '1s',
      IMAGELAKE_REQUEST_TIMEOUT: '3s',
    });
  });
  after(() => quick?.stop());

  it('answers a body that stops arriving with 408 BODY_TIMEOUT and closes the connection, landing nothing', async () => {
    const c = await createCustomer(quick.url, 'Stalled body');
    const image = await jpeg({ seed: 12 });
    const { socket, answer } = rawRequest(quick.url, uploadHead(quick.url, c.apiKey, 100_000));
    socket.write(image.subarray(0, 5000));
    const response = await answer;
    assert.match(response, /^HTTP\/1\.1 408 /);
    assert.match(response, /"code":"BODY_TIMEOUT"/);
    const listed = await api(quick.url, c.apiKey, 'GET', '/v1/images');
    assert.equal(listed.body.images.length, 0);
  });

  it('cuts off a body that trickles in slower than the whole-request timeout allows', async () => {
    const c = await createCustomer(quick.url, 'Trickle');
    const { socket, answer } = rawRequest(quick.url, uploadHead(quick.url, c.apiKey, 100_000));
    const image = await jpeg({ seed: 13 });
    let sent = 0;
    // A byte every 200 ms keeps the body-idle timer (1 s) from firing; only the request timeout can stop it.
    const drip = setInterval(() => {
      if (!socket.destroyed && sent < image.length) socket.write(image.subarray(sent, ++sent));
    }, 200);
    const response = await answer.finally(() => clearInterval(drip));
    assert.match(response, /^HTTP\/1\.1 408 /);
    const listed = await api(quick.url, c.apiKey, 'GET', '/v1/images');
    assert.equal(listed.body.images.length, 0, 'nothing landed from the cut-off body');
  });

  it('closes a connection whose headers never finish', async () => {
    const { host } = new URL(quick.url);
    const { answer } = rawRequest(quick.url, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nX-Slow: `);
    assert.match(await answer, /^HTTP\/1\.1 408 /);
  });

  it('still takes an ordinary upload', async () => {
    const c = await createCustomer(quick.url, 'Ordinary');
    assert.equal((await upload(quick.url, c.apiKey, await jpeg({ seed: 14 }))).status, 202);
  });
});
