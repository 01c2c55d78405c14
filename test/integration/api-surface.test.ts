import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as connectSocket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pino from 'pino';
import * as uniqueNames from '../../src/catalog/migrations/0016_unique_customer_names.ts';
import { loadConfig } from '../../src/config/config.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, upload } from './harness.ts';

/** Every log line the server writes, to tell what it counts as an error. */
const logs: Array<{ level: number; msg: string }> = [];
let server: RunningServer;
let url: string;
let dataDir: string;
let acme: { id: string; apiKey: string };
let analyst: string;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'imagelake-surface-'));
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  server = await startServer(
    loadConfig({
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_PORT: '0',
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      IMAGELAKE_POLL_INTERVAL: '200ms',
    }),
    { log: pino({ level: 'info' }, sink) },
  );
  url = server.url!;
  acme = await createCustomer(url, 'Acme');
  analyst = (await api(url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'surface' })).body.apiKey;
});
after(async () => {
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** A request written byte by byte on a socket: what fetch refuses to send. */
function raw(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connectSocket(Number(new URL(url).port), '127.0.0.1');
    let answer = '';
    socket.on('data', (d) => {
      answer += d;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    socket.write(request);
  });
}

function assertRefused(
  result: { status: number; body: { error?: { code: string; message: string } } },
  status: number,
  code: string,
  mentions?: RegExp,
) {
  assert.equal(result.status, status, JSON.stringify(result.body));
  assert.equal(result.body.error?.code, code, JSON.stringify(result.body));
  if (mentions) assert.match(result.body.error!.message, mentions);
}

describe('bad input is 400 with a code', () => {
  const RANGED = [
    '/v1/stats',
    '/v1/analytics/summary',
    '/v1/analytics/dimensions',
    '/v1/analytics/processors',
    '/v1/analytics/dimensions/quality.sharpness',
    '/v1/usage',
  ];

  it('refuses days of the right shape that do not exist, on /v1/stats and every ranged analytics route', async () => {
    for (const path of RANGED) {
      for (const [param, value] of [
        ['from', '2026-02-30'],
        ['to', '2026-13-01'],
        ['from', '2025-02-29'],
      ]) {
        const result = await api(url, ADMIN, 'GET', `${path}?${param}=${value}`);
        assertRefused(
          result,
          400,
          'VALIDATION_FAILED',
          new RegExp(`"${param}" must be a calendar day that exists`),
        );
      }
    }
    // A leap day exists.
    assert.equal((await api(url, ADMIN, 'GET', '/v1/stats?from=2024-02-29&to=2024-03-01')).status, 200);
  });

  it('answers a range whose from is after its to with nothing, not an error', async () => {
    const stats = await api(url, ADMIN, 'GET', '/v1/stats?from=2026-03-02&to=2026-03-01&groupBy=day');
    assert.equal(stats.status, 200, JSON.stringify(stats.body));
    assert.deepEqual(stats.body.rows, []);
    for (const path of RANGED.slice(1)) {
      const result = await api(url, analyst, 'GET', `${path}?from=2026-03-02&to=2026-03-01`);
      assert.equal(result.status, 200, `${path}: ${JSON.stringify(result.body)}`);
    }
  });

  it('refuses a purge cursor past what a receipt seq can be', async () => {
    assertRefused(
      await api(url, ADMIN, 'GET', '/v1/purges?before=1e40'),
      400,
      'VALIDATION_FAILED',
      /"before"/,
    );
    assert.equal((await api(url, ADMIN, 'GET', '/v1/purges?before=9007199254740991')).status, 200);
  });

  it('refuses a NUL in every name, filename and filter the catalog keeps or reads', async () => {
    const nul = 'bad\u0000name';
    assertRefused(
      await api(url, ADMIN, 'POST', '/v1/customers', { name: nul }),
      400,
      'VALIDATION_FAILED',
      /"name"/,
    );
    assertRefused(
      await api(url, ADMIN, 'POST', `/v1/customers/${acme.id}/keys`, { name: nul }),
      400,
      'VALIDATION_FAILED',
      /"name"/,
    );
    assertRefused(
      await api(url, ADMIN, 'POST', '/v1/analyst-keys', { name: nul }),
      400,
      'VALIDATION_FAILED',
      /"name"/,
    );
    assertRefused(
      await api(url, acme.apiKey, 'POST', '/v1/uploads', { filename: nul }),
      400,
      'VALIDATION_FAILED',
      /"filename"/,
    );
    assertRefused(
      await upload(url, acme.apiKey, await jpeg(), { 'x-filename': 'photo%00.jpg' }),
      400,
      'VALIDATION_FAILED',
      /filename/,
    );
    for (const path of ['/v1/analytics/summary', '/v1/analytics/dimensions/quality.sharpness']) {
      assertRefused(
        await api(url, analyst, 'GET', `${path}?source=${encodeURIComponent(nul)}`),
        400,
        'VALIDATION_FAILED',
        /"source"/,
      );
    }
  });

  it('names the field and lists the allowed values once', async () => {
    const result = await api(url, acme.apiKey, 'GET', '/v1/images?status=bogus');
    assertRefused(result, 400, 'VALIDATION_FAILED');
    const { message } = result.body.error;
    assert.match(
      message,
      /query parameter "status" must be one of: received, processing, processed, failed/i,
    );
    assert.equal(message.split('must').length - 1, 1, message);
    assert.doesNotMatch(message, /constant/);
  });
});

describe('bodies', () => {
  it('refuses a JSON body over the limit with BODY_TOO_LARGE, not as an image', async () => {
    const result = await api(url, ADMIN, 'POST', '/v1/customers', { name: 'x'.repeat(10 * 1024 * 1024) });
    assertRefused(result, 413, 'BODY_TOO_LARGE');
    assert.doesNotMatch(result.body.error.message, /image/i);
  });

  it('checks the key before the body: no key and a bad body is 401', async () => {
    const response = await fetch(`${url}/v1/customers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nam: 1 }),
    });
    assert.equal(response.status, 401);
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
  });

  it('refuses a blank name and a number as a name, and trims the name it keeps', async () => {
    for (const name of ['   ', '\u3000\t', 42]) {
      assertRefused(
        await api(url, ADMIN, 'POST', '/v1/customers', { name }),
        400,
        'VALIDATION_FAILED',
        /"name"/,
      );
    }
    const created = await api(url, ADMIN, 'POST', '/v1/customers', { name: '  Initech  ' });
    assert.equal(created.status, 201);
    assert.equal(created.body.name, 'Initech');
  });

  it('lets an optional body be left out, and refuses a JSON null', async () => {
    const issued = await fetch(`${url}/v1/analyst-keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    assert.equal(issued.status, 201);
    const doc = await (await fetch(`${url}/openapi.json`)).json();
    assert.equal(doc.paths['/v1/analyst-keys'].post.requestBody.required, false);
    assert.equal(doc.paths['/v1/customers'].post.requestBody.required, true);
    const nul = await fetch(`${url}/v1/analyst-keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: 'null',
    });
    assert.equal(nul.status, 400);
  });
});

describe("Node's own refusals", () => {
  it('answers headers over the limit with 431 in the error shape', async () => {
    const answer = await raw(`GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 431 /);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
    assert.equal(body.error.code, 'HEADERS_TOO_LARGE');
  });

  it('answers a malformed request with 400 in the error shape', async () => {
    const answer = await raw(
      'GET /v1/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
    assert.equal(body.error.code, 'MALFORMED_REQUEST');
    assert.ok(body.error.message);
  });

  it('logs a client that hangs up mid-upload as information, not as an error', async () => {
    const before = logs.length;
    const socket = connectSocket(Number(new URL(url).port), '127.0.0.1');
    await new Promise((resolve) => socket.on('connect', resolve));
    socket.write(
      `POST /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${acme.apiKey}\r\n` +
        'Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n',
    );
    socket.write((await jpeg()).subarray(0, 1000));
    // The server has the request once it has started reading the body; then the client goes.
    await new Promise((resolve) => setTimeout(resolve, 300));
    socket.destroy();
    for (let i = 0; i < 100 && !logs.slice(before).some((l) => /disconnected/.test(l.msg)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const lines = logs.slice(before);
    assert.ok(
      lines.some((l) => /client disconnected/.test(l.msg) && l.level === 30),
      JSON.stringify(lines),
    );
    assert.deepEqual(
      lines.filter((l) => l.level >= 50),
      [],
    );
  });
});

describe('headers', () => {
  it('sends a Content-Security-Policy, nosniff, no framing and no referrer on the dashboard and the API', async () => {
    for (const path of ['/dashboard', '/v1/stats', '/healthz', '/v1/nothing']) {
      const response = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
      const csp = response.headers.get('content-security-policy') ?? '';
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.match(csp, /default-src 'self'/, path);
      assert.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/=]+'/, path);
      assert.doesNotMatch(csp, /script-src[^;]*'unsafe-inline'/, path);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(response.headers.get('x-frame-options'), 'DENY', path);
      assert.equal(response.headers.get('referrer-policy'), 'no-referrer', path);
    }
  });

  it('keeps keys and images out of caches', async () => {
    const created = await api(url, ADMIN, 'POST', '/v1/customers', { name: 'Umbrella' });
    assert.equal(created.headers.get('cache-control'), 'no-store');
    const key = await api(url, ADMIN, 'POST', `/v1/customers/${created.body.id}/keys`, {});
    assert.equal(key.headers.get('cache-control'), 'no-store');
    const landed = await upload(url, created.body.apiKey, await jpeg());
    const original = await fetch(`${url}/v1/images/${landed.body.id}/original`, {
      headers: { authorization: `Bearer ${created.body.apiKey}` },
    });
    assert.equal(original.status, 200);
    assert.equal(original.headers.get('cache-control'), 'no-store');
    // The dashboard's charting library is the one answer a cache may keep.
    const echarts = await fetch(`${url}/dashboard/echarts.min.js`);
    assert.match(echarts.headers.get('cache-control') ?? '', /max-age/);
  });
});

describe('the OpenAPI document matches the server', () => {
  it("lists every customer's images for an admin key without customerId, as the schema allows", async () => {
    const other = await createCustomer(url, 'Hooli');
    const a = await upload(url, acme.apiKey, await jpeg({ width: 64, height: 48 }));
    const b = await upload(url, other.apiKey, await jpeg({ width: 48, height: 64, seed: 1 }));
    const all = await api(url, ADMIN, 'GET', '/v1/images?limit=500');
    assert.equal(all.status, 200, JSON.stringify(all.body));
    const ids = all.body.images.map((i: { id: string }) => i.id);
    assert.ok(ids.includes(a.body.id) && ids.includes(b.body.id));
    const one = await api(url, ADMIN, 'GET', `/v1/images?customerId=${other.id}`);
    assert.deepEqual(
      one.body.images.map((i: { id: string }) => i.id),
      [b.body.id],
    );
    // A customer still sees only its own.
    const own = await api(url, other.apiKey, 'GET', '/v1/images');
    assert.deepEqual(
      own.body.images.map((i: { id: string }) => i.id),
      [b.body.id],
    );
  });

  it('documents 400 and 401 on every operation that takes a key', async () => {
    const doc = await (await fetch(`${url}/openapi.json`)).json();
    const missing: string[] = [];
    for (const [path, operations] of Object.entries<Record<string, { responses: Record<string, unknown> }>>(
      doc.paths,
    )) {
      for (const [method, operation] of Object.entries(operations)) {
        for (const status of ['400', '401', '403']) {
          if (!operation.responses[status]) missing.push(`${method.toUpperCase()} ${path} ${status}`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  it('answers 405 with Allow for a method a known path does not take', async () => {
    // fetch will not send TRACE.
    const trace = await raw(`TRACE /v1/customers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.match(trace, /^HTTP\/1\.1 405 /);
    assert.match(trace, /\r\nallow: GET, HEAD, POST\r\n/i);
    for (const method of ['PUT', 'QUERY', 'OPTIONS']) {
      const response = await fetch(`${url}/v1/customers`, {
        method,
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      assert.equal(response.status, 405, method);
      assert.equal(response.headers.get('allow'), 'GET, HEAD, POST', method);
      assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'METHOD_NOT_ALLOWED');
    }
    const image = await fetch(`${url}/v1/images/5f0c1e2a-0000-4000-8000-000000000000`, { method: 'PATCH' });
    assert.equal(image.status, 405);
    assert.equal(image.headers.get('allow'), 'DELETE, GET, HEAD');
    assert.equal((await fetch(`${url}/v1/nothing`, { method: 'DELETE' })).status, 404);
  });
});

describe('answers as documented', () => {
  it('answers SQL as JSON with the JSON media type the document declares', async () => {
    const result = await api(url, analyst, 'POST', '/v1/sql', { query: 'select 1 as one' });
    assert.equal(result.status, 200, JSON.stringify(result.body));
    assert.match(result.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(result.body.rows, [{ one: 1 }]);
  });
});

describe('customer names', () => {
  it('refuses a second customer of the same name, ignoring case, with 409', async () => {
    await createCustomer(url, 'Acme Corp');
    const again = await api(url, ADMIN, 'POST', '/v1/customers', { name: 'ACME CORP' });
    assertRefused(again, 409, 'CUSTOMER_EXISTS', /taken/);
    const list = await api(url, ADMIN, 'GET', '/v1/customers');
    assert.equal(list.body.customers.filter((c: { name: string }) => /^acme corp$/i.test(c.name)).length, 1);
  });

  it('lets one of two simultaneous creations of a name win', async () => {
    const results = await Promise.all(
      Array.from({ length: 4 }, () => api(url, ADMIN, 'POST', '/v1/customers', { name: 'Race' })),
    );
    assert.deepEqual(results.map((r) => r.status).sort(), [201, 409, 409, 409]);
  });

  it('the migration keeps the oldest of customers that share a name and tells the others apart by id', async () => {
    const db = server.db;
    await sql`drop index customers_name_unique`.execute(db);
    const ids = ['10000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000002'];
    await sql`insert into customers (id, name, created_at) values
      (${ids[0]}, 'Twin', now() - interval '1 day'), (${ids[1]}, 'twin', now())`.execute(db);
    await uniqueNames.up(db as never);
    const rows = await sql<{ id: string; name: string }>`
      select id, name from customers where id in (${ids[0]}, ${ids[1]}) order by created_at`.execute(db);
    assert.deepEqual(
      rows.rows.map((r) => r.name),
      ['Twin', 'twin (20000000)'],
    );
    assertRefused(await api(url, ADMIN, 'POST', '/v1/customers', { name: 'TWIN' }), 409, 'CUSTOMER_EXISTS');
  });
});
