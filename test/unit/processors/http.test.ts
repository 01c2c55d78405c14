import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Processors } from '../../../src/processing/processors/chain.ts';
import { image, open } from './helpers.ts';

/** A real HTTP service speaking the protocol; each path behaves differently. */
let server: Server;
let base: string;
const hits = new Map<string, number>();
let active = 0;
let peak = 0;

async function form(req: IncomingMessage) {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = Buffer.concat(chunks);
  const parsed = await new Request('http://x', {
    method: 'POST',
    headers: { 'content-type': req.headers['content-type']! },
    body,
  }).formData();
  const request = JSON.parse(await (parsed.get('request') as Blob).text());
  const bytes = Buffer.from(await (parsed.get('image') as Blob).arrayBuffer());
  return { request, bytes, type: (parsed.get('image') as Blob).type };
}

before(async () => {
  server = createServer(async (req, res) => {
    const path = req.url!;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    active++;
    peak = Math.max(peak, active);
    try {
      const { request, bytes, type } = await form(req);
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (path === '/ok') {
        return json(200, {
          ok: true,
          metadata: { label: `${request.image.input}:${type}:${bytes.length}` },
          labels: ['cat', 'cat', 'indoor'],
          images: [{ name: 'echo', format: type.split('/')[1], data: bytes.toString('base64') }],
        });
      }
      if (path === '/flaky') {
        // Fails twice per request id, then answers: the retries must reuse the id.
        const key = `flaky:${req.headers['imagelake-request-id']}`;
        hits.set(key, (hits.get(key) ?? 0) + 1);
        if (hits.get(key)! <= 2) return json(503, { error: 'warming up' });
        return json(200, { ok: true, metadata: { label: 'third time' } });
      }
      if (path === '/slow') {
        await new Promise((r) => setTimeout(r, 150));
        return json(200, { ok: true, metadata: { label: 'slow' } });
      }
      if (path === '/hang') return; // never answers
      if (path === '/refuses') return json(400, { error: 'bad input' });
      if (path === '/coded') return json(200, { ok: false, error: { code: 'NO_FACES', message: 'none' } });
      if (path === '/garbage') {
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<html>proxy error</html>');
      }
      if (path === '/wrong-type') return json(200, { ok: true, metadata: { label: 42 } });
      if (path === '/breaks-off') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
        res.write('{"ok": true, "meta');
        return res.destroy();
      }
      if (path === '/endless') {
        // An answer past the 64 MiB bound: the host stops reading instead of buffering it all.
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(2 ** 20, 0x20);
        for (let i = 0; i < 80 && !res.destroyed; i++) {
          if (!res.write(chunk)) await new Promise((r) => res.once('drain', r).once('close', r));
        }
        return res.end();
      }
      json(404, {});
    } finally {
      active--;
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

const opened: Processors[] = [];
after(async () => {
  await Promise.all(opened.map((p) => p.close()));
  server.closeAllConnections();
  server.close();
});

async function tagger(path: string, extra: Record<string, unknown> = {}) {
  const processors = await open([
    { name: 'tagger', url: `${base}${path}`, version: '2.1.0', fields: { label: 'string' }, ...extra },
  ]);
  opened.push(processors);
  return processors;
}

describe('an HTTP processor', () => {
  it('posts the image and the request, and its metadata, labels and derived images come back checked', async () => {
    const processors = await tagger('/ok');
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.equal(out.failure, undefined);
    assert.deepEqual(out.outputs.tagger, { label: `original:image/jpeg:${input.original.length}` });
    assert.deepEqual(out.labels.tagger, ['cat', 'indoor']);
    assert.equal(out.versions.tagger, '2.1.0');
    assert.equal(out.images.length, 1);
    assert.deepEqual(Buffer.from(out.images[0]!.data), input.original);
    assert.equal(out.images[0]!.format, 'jpeg');
  });

  it('sends the preview when declared with input "preview"', async () => {
    const processors = await tagger('/ok', { input: 'preview' });
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.equal(out.outputs.tagger?.label, `preview:image/webp:${input.preview!.length}`);
  });

  it('retries 5xx with the same request id, and succeeds', async () => {
    const processors = await tagger('/flaky', { retries: 2 });
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.deepEqual(out.outputs.tagger, { label: 'third time' });
  });

  it('gives up after its retries with PROCESSOR_UNAVAILABLE', async () => {
    const processors = await tagger('/flaky', { retries: 1 });
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.equal(out.failure?.code, 'PROCESSOR_UNAVAILABLE');
    assert.match(out.failure!.message, /503.*after 2 tries/s);
  });

  it('a service that does not answer in time fails with PROCESSOR_TIMEOUT', async () => {
    const processors = await tagger('/hang', { timeout: '300ms', retries: 1 });
    const { info, input } = await image();
    const before = hits.get('/hang') ?? 0;
    const out = await processors.run(info, input);
    assert.equal(out.failure?.code, 'PROCESSOR_TIMEOUT');
    assert.equal((hits.get('/hang') ?? 0) - before, 2, 'a timeout is retried');
  });

  it('a refused connection is PROCESSOR_UNAVAILABLE and says where it tried', async () => {
    // A port that was just free: nothing listens there now.
    const probe = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => probe.once('listening', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const processors = await open([
      { name: 'gone', url: `http://127.0.0.1:${port}/process`, version: '1', fields: {}, retries: 0 },
    ]);
    opened.push(processors);
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.equal(out.failure?.code, 'PROCESSOR_UNAVAILABLE');
    assert.match(out.failure!.message, new RegExp(`127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
  });

  it('a 4xx is not retried; a coded error keeps its code; garbage and wrong types are refused', async () => {
    const { info, input } = await image();
    const before = hits.get('/refuses') ?? 0;
    const refused = await (await tagger('/refuses')).run(info, input);
    assert.equal(refused.failure?.code, 'PROCESSOR_FAILED');
    assert.equal((hits.get('/refuses') ?? 0) - before, 1);
    const coded = await (await tagger('/coded')).run(info, input);
    assert.equal(coded.failure?.code, 'PROCESSOR_FAILED');
    assert.equal(coded.failure?.processorCode, 'NO_FACES');
    const garbage = await (await tagger('/garbage')).run(info, input);
    assert.equal(garbage.failure?.code, 'PROCESSOR_OUTPUT_INVALID');
    const wrong = await (await tagger('/wrong-type')).run(info, input);
    assert.equal(wrong.failure?.code, 'PROCESSOR_OUTPUT_INVALID');
    assert.match(wrong.failure!.message, /"label" should be string, got the integer 42/);
  });

  it('an answer that breaks off is retried, then PROCESSOR_UNAVAILABLE; one past the size bound is refused', async () => {
    const { info, input } = await image();
    const before = hits.get('/breaks-off') ?? 0;
    const broken = await (await tagger('/breaks-off', { retries: 1 })).run(info, input);
    assert.equal(broken.failure?.code, 'PROCESSOR_UNAVAILABLE');
    assert.match(broken.failure!.message, /broke off.*after 2 tries/);
    assert.equal((hits.get('/breaks-off') ?? 0) - before, 2);
    const endless = await (await tagger('/endless')).run(info, input);
    assert.equal(endless.failure?.code, 'PROCESSOR_OUTPUT_INVALID');
    assert.match(endless.failure!.message, /over 67108864 bytes/);
  });

  it('keeps at most `concurrency` requests in flight', async () => {
    const processors = await tagger('/slow', { concurrency: 2 });
    const { info, input } = await image();
    peak = 0;
    const outs = await Promise.all(Array.from({ length: 8 }, () => processors.run(info, input)));
    assert.ok(outs.every((o) => o.outputs.tagger?.label === 'slow'));
    assert.equal(peak, 2);
  });
});
