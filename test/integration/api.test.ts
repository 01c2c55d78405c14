import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { avif, gif, heic, jpeg, png, pngBomb, tiff, webp } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, settled, startTestServer, type TestServer, upload } from './harness.ts';

let t: TestServer;
let acme: { id: string; apiKey: string };
let globex: { id: string; apiKey: string };

before(async () => {
  t = await startTestServer({ IMAGELAKE_MAX_BYTES: '3MiB', IMAGELAKE_MAX_PIXELS: '50000000' });
  acme = await createCustomer(t.url, 'Acme');
  globex = await createCustomer(t.url, 'Globex');
});
after(() => t.stop());

describe('health and contract', () => {
  it('answers health, readiness and metrics', async () => {
    assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
    const ready = await (await fetch(`${t.url}/readyz`)).json();
    assert.deepEqual(ready, { status: 'ready', checks: { catalog: 'ok', lake: 'ok' } });
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /imagelake_queue_depth\{state="queued",priority="interactive"\}/);
    assert.match(metrics, /# TYPE imagelake_processing_seconds histogram/);
    assert.match(metrics, /imagelake_purge_lag_seconds/);
  });

  it("counts the lake's requests and written bytes in /metrics", async () => {
    const counters = async () => {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      const read = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
      return {
        puts: read(/imagelake_lake_requests_total\{operation="put"\} (\d+)/),
        gets: read(/imagelake_lake_requests_total\{operation="get"\} (\d+)/),
        durable: read(/imagelake_lake_written_bytes_total\{kind="durable"\} (\d+)/),
        derived: read(/imagelake_lake_written_bytes_total\{kind="derived"\} (\d+)/),
      };
    };
    const before = await counters();
    const bytes = await jpeg({ width: 640, height: 480, seed: 7 });
    const { status, body } = await upload(t.url, acme.apiKey, bytes);
    assert.equal(status, 202);
    assert.equal((await settled(t.url, acme.apiKey, body.id)).status, 'processed');
    const after = await counters();
    assert.ok(after.durable - before.durable >= bytes.length, 'the original, written durably');
    assert.ok(after.derived > before.derived, 'renditions and sidecars, derived');
    assert.ok(
      after.puts - before.puts >= 2,
      `the original and its derivatives (${after.puts - before.puts} puts)`,
    );
    assert.ok(after.gets > before.gets, 'the worker read the original back');
  });

  it('serves an OpenAPI document generated from the route schemas', async () => {
    const doc = await (await fetch(`${t.url}/openapi.json`)).json();
    assert.equal(doc.openapi, '3.1.0');
    for (const path of [
      '/v1/customers',
      '/v1/images',
      '/v1/images/{id}',
      '/v1/images/{id}/original',
      '/v1/images/{id}/renditions/{name}',
      '/v1/stats',
    ]) {
      assert.ok(doc.paths[path], `${path} is documented`);
    }
  });

  it('answers unknown routes with the error shape', async () => {
    const { status, body } = await api(t.url, ADMIN, 'GET', '/v1/nothing');
    assert.equal(status, 404);
    assert.equal(body.error.code, 'NOT_FOUND');
  });
});

describe('auth', () => {
  it('refuses a missing or unknown key', async () => {
    assert.equal((await fetch(`${t.url}/v1/images`)).status, 401);
    const { status, body } = await api(t.url, 'il_live_nonsense', 'GET', '/v1/images');
    assert.equal(status, 401);
    assert.equal(body.error.code, 'UNAUTHORIZED');
  });

  it('keeps admin routes for admins', async () => {
    const { status, body } = await api(t.url, acme.apiKey, 'POST', '/v1/customers', { name: 'x' });
    assert.equal(status, 403);
    assert.equal(body.error.code, 'FORBIDDEN');
  });

  it('lets analysts read statistics but no image', async () => {
    const analyst = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'bi' })).body;
    assert.equal((await api(t.url, analyst.apiKey, 'GET', '/v1/stats?groupBy=customer')).status, 200);
    const { body: image } = await upload(t.url, acme.apiKey, await jpeg());
    assert.equal((await api(t.url, analyst.apiKey, 'GET', `/v1/images/${image.id}`)).status, 403);
    assert.equal((await api(t.url, analyst.apiKey, 'GET', `/v1/images/${image.id}/original`)).status, 403);
    assert.equal((await upload(t.url, analyst.apiKey, await jpeg())).status, 403);
  });

  it('revokes a key at once', async () => {
    const issued = (await api(t.url, ADMIN, 'POST', `/v1/customers/${acme.id}/keys`, { name: 'rotating' }))
      .body;
    assert.equal((await api(t.url, issued.apiKey, 'GET', '/v1/images')).status, 200);
    assert.equal((await api(t.url, ADMIN, 'DELETE', `/v1/keys/${issued.id}`)).status, 204);
    assert.equal((await api(t.url, issued.apiKey, 'GET', '/v1/images')).status, 401);
    const keys = (await api(t.url, ADMIN, 'GET', `/v1/keys?customerId=${acme.id}`)).body.keys;
    assert.ok(keys.some((k: { id: string; revokedAt: string | null }) => k.id === issued.id && k.revokedAt));
    assert.ok(keys.every((k: Record<string, unknown>) => !('hash' in k) && !('apiKey' in k)));
  });

  it("isolates customers: another's image is not found, anywhere", async () => {
    const { body } = await upload(t.url, acme.apiKey, await png());
    const image = await settled(t.url, acme.apiKey, body.id);
    for (const path of [
      `/v1/images/${image.id}`,
      `/v1/images/${image.id}/original`,
      `/v1/images/${image.id}/renditions/thumb`,
    ]) {
      const other = await api(t.url, globex.apiKey, 'GET', path);
      assert.equal(other.status, 404, path);
      assert.equal(other.body.error.code, 'NOT_FOUND');
    }
    assert.equal((await api(t.url, globex.apiKey, 'DELETE', `/v1/images/${image.id}`)).status, 404);
    const listed = (await api(t.url, globex.apiKey, 'GET', '/v1/images')).body.images;
    assert.ok(listed.every((i: { customerId: string }) => i.customerId === globex.id));
    assert.equal((await api(t.url, acme.apiKey, 'GET', `/v1/images/${image.id}`)).status, 200);
  });
});

describe('upload and processing', () => {
  const formats: Array<[string, () => Promise<Buffer> | Buffer, number, number]> = [
    ['jpeg', () => jpeg({ width: 640, height: 480, orientation: 6, gps: true }), 480, 640],
    ['png', () => png({ alpha: true }), 640, 480],
    ['webp', webp, 500, 300],
    ['gif', () => gif(2), 120, 80],
    ['avif', avif, 400, 300],
    ['tiff', tiff, 300, 400],
    ['heic', heic, 320, 200],
  ];
  for (const [format, make, width, height] of formats) {
    it(`${format}: lands, processes, serves original and renditions without GPS`, async () => {
      const bytes = await make();
      const landed = await upload(t.url, acme.apiKey, bytes, { 'x-filename': `photo.${format}` });
      assert.equal(landed.status, 202);
      assert.equal(landed.body.status, 'received');
      assert.equal(landed.body.bytes, bytes.length);
      assert.equal(landed.body.checksum, createHash('sha256').update(bytes).digest('hex'));
      const image = await settled(t.url, acme.apiKey, landed.body.id);
      assert.equal(image.status, 'processed', JSON.stringify(image.error));
      assert.equal(image.format, format);
      assert.equal(image.width, width);
      assert.equal(image.height, height);
      assert.equal(image.source, 'http');
      assert.equal(image.filename, `photo.${format}`);
      assert.match(image.phash, /^[0-9a-f]{16}$/);
      assert.ok(Date.parse(image.expiresAt) - Date.parse(image.receivedAt) === 7 * 86_400_000);
      assert.equal(image.metadata.format, format);

      const original = await fetch(`${t.url}/v1/images/${image.id}/original`, {
        headers: { authorization: `Bearer ${acme.apiKey}` },
      });
      assert.equal(original.status, 200);
      assert.deepEqual(Buffer.from(await original.arrayBuffer()), bytes);

      assert.deepEqual(
        image.renditions.map((r: { name: string }) => r.name),
        ['thumb', 'preview'],
      );
      for (const r of image.renditions) {
        const response = await fetch(`${t.url}${r.url}`, {
          headers: { authorization: `Bearer ${acme.apiKey}` },
        });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get('content-type'), 'image/webp');
        const meta = await sharp(Buffer.from(await response.arrayBuffer())).metadata();
        assert.equal(meta.width, r.width);
        assert.equal(meta.exif, undefined, 'no EXIF, so no GPS');
        assert.equal(meta.xmp, undefined);
        // Renditions keep the upright aspect ratio.
        assert.ok(Math.abs(meta.width! / meta.height! - width / height) < 0.02);
      }
    });
  }

  it('accepts multipart/form-data with a file field', async () => {
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(await jpeg())]), 'form.jpg');
    const response = await fetch(`${t.url}/v1/images`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme.apiKey}` },
      body: form,
    });
    assert.equal(response.status, 202);
    const image = await settled(t.url, acme.apiKey, ((await response.json()) as { id: string }).id);
    assert.equal(image.status, 'processed');
    assert.equal(image.filename, 'form.jpg');
  });

  it('takes direct uploads: start, PUT the bytes, complete; completing twice lands once', async () => {
    const session = (await api(t.url, acme.apiKey, 'POST', '/v1/uploads', { filename: 'direct.jpg' })).body;
    assert.equal(session.authorization, 'bearer', 'the folder lake takes the bytes through the API');
    assert.equal(
      (await api(t.url, acme.apiKey, 'POST', `/v1/uploads/${session.id}/complete`)).body.error.code,
      'UPLOAD_EMPTY',
    );
    const bytes = await jpeg({ seed: 77 });
    const put = await fetch(session.uploadUrl, {
      method: 'PUT',
      headers: { authorization: `Bearer ${acme.apiKey}`, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 200);
    const done = await api(t.url, acme.apiKey, 'POST', `/v1/uploads/${session.id}/complete`);
    assert.equal(done.status, 202);
    const image = await settled(t.url, acme.apiKey, done.body.id);
    assert.equal(image.status, 'processed');
    assert.equal(image.filename, 'direct.jpg');
    assert.equal(image.checksum, createHash('sha256').update(bytes).digest('hex'));
    const again = await api(t.url, acme.apiKey, 'POST', `/v1/uploads/${session.id}/complete`);
    assert.equal(again.body.id, done.body.id);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(
      (await api(t.url, globex.apiKey, 'POST', `/v1/uploads/${session.id}/complete`)).body.error.code,
      'UPLOAD_NOT_FOUND',
    );

    const junk = (await api(t.url, acme.apiKey, 'POST', '/v1/uploads', {})).body;
    await fetch(junk.uploadUrl, {
      method: 'PUT',
      headers: { authorization: `Bearer ${acme.apiKey}` },
      body: 'not an image',
    });
    const refused = await api(t.url, acme.apiKey, 'POST', `/v1/uploads/${junk.id}/complete`);
    assert.equal(refused.status, 415, 'content is checked at completion, like any upload');
  });

  it('trusts bytes, not Content-Type', async () => {
    const landed = await upload(t.url, acme.apiKey, await png(), { 'content-type': 'image/jpeg' });
    assert.equal(landed.status, 202);
    assert.equal((await settled(t.url, acme.apiKey, landed.body.id)).format, 'png');
    const json = await upload(t.url, acme.apiKey, await webp(), { 'content-type': 'application/json' });
    assert.equal(json.status, 202);
  });

  it('lands an Idempotency-Key once and answers a retry with the first landing', async () => {
    const bytes = await jpeg({ seed: 42 });
    const first = await upload(t.url, globex.apiKey, bytes, { 'idempotency-key': 'order-17' });
    const again = await upload(t.url, globex.apiKey, bytes, { 'idempotency-key': 'order-17' });
    assert.equal(first.status, 202);
    assert.equal(again.status, 202);
    assert.equal(again.body.id, first.body.id);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    const racing = await Promise.all(
      Array.from({ length: 5 }, () => upload(t.url, globex.apiKey, bytes, { 'idempotency-key': 'order-18' })),
    );
    assert.equal(new Set(racing.map((r) => r.body.id)).size, 1, 'concurrent retries land once');
    // The same key belongs to each customer separately.
    const other = await upload(t.url, acme.apiKey, bytes, { 'idempotency-key': 'order-17' });
    assert.notEqual(other.body.id, first.body.id);
  });

  it('refuses an Idempotency-Key reused for other bytes with 422 IDEMPOTENCY_KEY_REUSED, naming the first image', async () => {
    const bytes = await jpeg({ seed: 43 });
    const otherBytes = await jpeg({ seed: 44 });
    const first = await upload(t.url, globex.apiKey, bytes, { 'idempotency-key': 'order-19' });
    assert.equal(first.status, 202);
    const other = await upload(t.url, globex.apiKey, otherBytes, { 'idempotency-key': 'order-19' });
    assert.equal(other.status, 422);
    assert.equal(other.body.error.code, 'IDEMPOTENCY_KEY_REUSED');
    assert.match(other.body.error.message, new RegExp(first.body.id));
    const again = await upload(t.url, globex.apiKey, bytes, { 'idempotency-key': 'order-19' });
    assert.equal(again.status, 202, 'the same bytes still replay the first answer');
    assert.equal(again.body.id, first.body.id);
    const otherSum = createHash('sha256').update(otherBytes).digest('hex');
    const listed = await api(t.url, globex.apiKey, 'GET', '/v1/images?limit=500');
    assert.ok(!listed.body.images.some((i: { checksum: string }) => i.checksum === otherSum));
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /imagelake_ingest_rejected_total\{source="http",code="IDEMPOTENCY_KEY_REUSED"\} 1/);
  });

  it('pages through images newest first', async () => {
    const c = await createCustomer(t.url, 'Pager');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await upload(t.url, c.apiKey, await jpeg({ width: 64, height: 64, seed: i }))).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const { body } = await api(
        t.url,
        c.apiKey,
        'GET',
        `/v1/images?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      seen.push(...body.images.map((i: { id: string }) => i.id));
      cursor = body.next;
    } while (cursor);
    assert.deepEqual(seen, ids.reverse());
    assert.equal(
      (await api(t.url, c.apiKey, 'GET', '/v1/images?cursor=garbage')).body.error.code,
      'VALIDATION_FAILED',
    );
  });

  it('erases an image from the lake and the catalog on DELETE', async () => {
    const { body } = await upload(t.url, acme.apiKey, await jpeg({ seed: 7 }));
    const image = await settled(t.url, acme.apiKey, body.id);
    const erased = await api(t.url, acme.apiKey, 'DELETE', `/v1/images/${image.id}`);
    assert.equal(erased.status, 200);
    assert.equal(erased.body.kind, 'erasure');
    assert.deepEqual(erased.body.deleted.raw, { count: 1, bytes: image.bytes });
    assert.equal(erased.body.deleted.rendition.count, 2);
    assert.equal(erased.body.deleted.metadata.count, 1);
    assert.equal(erased.body.deleted.catalog.count, 1);
    assert.equal(erased.body.subjects.length, 1);
    assert.ok(
      !JSON.stringify(erased.body).includes(image.id),
      'the receipt names the image only by its hash',
    );
    assert.equal((await api(t.url, acme.apiKey, 'GET', `/v1/images/${image.id}`)).status, 404);
    const left: string[] = [];
    for (const area of ['raw/', 'renditions/', 'metadata/']) {
      for await (const o of t.server.lake.list(area)) if (o.key.includes(image.id)) left.push(o.key);
    }
    assert.deepEqual(left, []);
  });
});

describe('bad input', () => {
  async function refused(bytes: Buffer, status: number, code: string) {
    const r = await upload(t.url, acme.apiKey, bytes);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code);
    assert.ok(r.body.error.message.length > 10);
  }

  it('refuses empty, non-image, SVG and oversized uploads with stable codes', async () => {
    await refused(Buffer.alloc(0), 400, 'EMPTY_BODY');
    await refused(Buffer.from('just some text, not an image at all'), 415, 'UNSUPPORTED_FORMAT');
    await refused(
      Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
      415,
      'UNSUPPORTED_FORMAT',
    );
    await refused(Buffer.from('%PDF-1.4 fake'), 415, 'UNSUPPORTED_FORMAT');
    const big = Buffer.concat([await jpeg(), Buffer.alloc(4 * 1024 * 1024, 1)]);
    await refused(big, 413, 'IMAGE_TOO_LARGE');
  });

  it('sniffs a body whose first bytes arrive in several small chunks', async () => {
    /** POSTs the bytes 5 at a time for the first 40, a pause after each, then the rest at once. */
    const trickled = (bytes: Buffer) =>
      new Promise<{ status: number; body: { error?: { code: string }; bytes?: number } }>(
        (resolve, reject) => {
          const sending = request(
            `${t.url}/v1/images`,
            { method: 'POST', headers: { authorization: `Bearer ${acme.apiKey}` } },
            (response) => {
              let text = '';
              response.setEncoding('utf8').on('data', (chunk) => {
                text += chunk;
              });
              response.on('end', () => resolve({ status: response.statusCode!, body: JSON.parse(text) }));
            },
          );
          sending.on('error', reject);
          void (async () => {
            for (let at = 0; at < 40; at += 5) {
              sending.write(bytes.subarray(at, at + 5));
              await new Promise((wait) => setTimeout(wait, 20));
            }
            sending.end(bytes.subarray(40));
          })();
        },
      );
    const image = await png();
    const landed = await trickled(image);
    assert.equal(landed.status, 202, JSON.stringify(landed.body));
    assert.equal(landed.body.bytes, image.length);
    const text = await trickled(
      Buffer.from('just some text, not an image at all, sent a few bytes at a time'),
    );
    assert.equal(text.status, 415);
    assert.equal(text.body.error?.code, 'UNSUPPORTED_FORMAT');
  });

  it('counts a POST without a body in imagelake_ingest_rejected_total', async () => {
    const count = async () => {
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      const m = /imagelake_ingest_rejected_total\{source="http",code="EMPTY_BODY"\} (\d+)/.exec(metrics);
      return Number(m?.[1] ?? 0);
    };
    const before = await count();
    const response = await fetch(`${t.url}/v1/images`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme.apiKey}` },
    });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as any).error.code, 'EMPTY_BODY');
    assert.equal(await count(), before + 1);
  });

  it('fails corrupt, truncated and bomb images with their reason, and keeps serving', async () => {
    const whole = await jpeg({ width: 800, height: 600 });
    const cases: Array<[Buffer, string]> = [
      [whole.subarray(0, Math.floor(whole.length / 2)), 'CORRUPT_IMAGE'],
      [Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(3000, 9)]), 'CORRUPT_IMAGE'],
      [pngBomb(), 'TOO_MANY_PIXELS'],
    ];
    for (const [bytes, code] of cases) {
      const landed = await upload(t.url, acme.apiKey, bytes);
      assert.equal(landed.status, 202);
      const image = await settled(t.url, acme.apiKey, landed.body.id);
      assert.equal(image.status, 'failed');
      assert.equal(image.error.code, code);
      assert.ok(image.error.message);
    }
    const fine = await upload(t.url, acme.apiKey, await jpeg({ seed: 99 }));
    assert.equal((await settled(t.url, acme.apiKey, fine.body.id)).status, 'processed');
  });
});

describe('statistics', () => {
  it('count what each customer uploaded, by format and day', async () => {
    const c1 = await createCustomer(t.url, 'Stats One');
    const c2 = await createCustomer(t.url, 'Stats Two');
    const plan: Array<[typeof c1, () => Promise<Buffer>, number]> = [
      [c1, () => jpeg({ width: 100, height: 80 }), 3],
      [c1, () => png({ width: 100, height: 80 }), 2],
      [c2, () => webp(), 4],
    ];
    const ids: Array<[string, string]> = [];
    let seed = 1000;
    for (const [c, make, n] of plan) {
      for (let i = 0; i < n; i++) {
        const bytes = await make();
        // Vary the bytes so nothing is a duplicate.
        const landed = await upload(t.url, c.apiKey, Buffer.concat([bytes]), {
          'idempotency-key': `k${seed++}`,
        });
        ids.push([c.apiKey, landed.body.id]);
      }
    }
    for (const [key, id] of ids) await settled(t.url, key, id);
    const today = new Date().toISOString().slice(0, 10);
    const { body } = await api(
      t.url,
      ADMIN,
      'GET',
      `/v1/stats?from=${today}&to=${today}&groupBy=day,customer,format,status`,
    );
    const mine = body.rows.filter((r: { customer: string }) => r.customer === c1.id || r.customer === c2.id);
    const simplified = mine.map((r: any) => [r.customerName, r.format, r.status, r.images]).sort();
    assert.deepEqual(simplified, [
      ['Stats One', 'jpeg', 'processed', 3],
      ['Stats One', 'png', 'processed', 2],
      ['Stats Two', 'webp', 'processed', 4],
    ]);
    assert.ok(mine.every((r: { day: string }) => r.day === today));
    // A customer sees only its own statistics.
    const own = (await api(t.url, c2.apiKey, 'GET', '/v1/stats?groupBy=customer')).body.rows;
    assert.deepEqual(
      own.map((r: any) => [r.customer, r.images]),
      [[c2.id, 4]],
    );
    const bad = await api(t.url, ADMIN, 'GET', '/v1/stats?groupBy=colour');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'VALIDATION_FAILED');
  });
});
