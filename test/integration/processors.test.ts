import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, cli, createCustomer, freePort, settled, spawnServer, until, upload } from './harness.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixture = (name: string) => join(root, 'test/fixtures/processors', name);
const quality = join(root, 'examples/processors/python/quality.py');
// The project's Python (SDK, Pillow, numpy), made by scripts/services/python.
const python = execFileSync('bash', [join(root, 'scripts/services/python'), 'path'], {
  encoding: 'utf8',
}).trim();

const plain = (value: number, width = 160, height = 120) =>
  sharp({ create: { width, height, channels: 3, background: { r: value, g: value, b: value } } })
    .jpeg()
    .toBuffer();

/** The Python example served over HTTP by the SDK, as a url processor would be in production. */
async function servePythonHttp(): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(python, [quality, '--http', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = `http://127.0.0.1:${port}`;
  await until(
    'the Python HTTP processor',
    () =>
      fetch(url)
        .then((r) => r.ok)
        .catch(() => false),
    30_000,
  );
  return { url, child };
}

describe('processors of every kind, end to end', () => {
  let server: Awaited<ReturnType<typeof spawnServer>>;
  let http: Awaited<ReturnType<typeof servePythonHttp>>;
  let dir: string;
  let env: Record<string, string>;
  let customer: { id: string; apiKey: string };
  const ids: string[] = [];

  const processorsFile = (cmdVersion: string) => ({
    processors: [
      { name: 'mean-color', module: fixture('mean-color.ts'), memory: '128MB', timeout: '10s' },
      {
        name: 'quality',
        command: [python, quality],
        config: { edges: true },
        memory: '400MB',
        timeout: '30s',
        after: ['mean-color'],
      },
      {
        name: 'quality-http',
        url: `${http.url}/`,
        version: '1.0.0',
        fields: {
          sharpness: 'number',
          brightness: 'number',
          contrast: 'number',
          dominant_colors: 'string[]',
          exposure: 'string',
        },
        input: 'preview',
        timeout: '30s',
        required: false,
      },
      {
        name: 'cmd',
        command: [process.execPath, fixture('command.ts'), 'cmd', cmdVersion],
        required: false,
        // Version 1 crashes on images 333 px wide; version 2 is the fix.
        config: { mode: 'exit', width: cmdVersion === '1.0.0' ? 333 : -1 },
      },
    ],
  });

  before(async () => {
    http = await servePythonHttp();
    dir = await mkdtemp(join(tmpdir(), 'imagelake-processors-'));
    await writeFile(join(dir, 'processors.json'), JSON.stringify(processorsFile('1.0.0')));
    env = {
      IMAGELAKE_DATA_DIR: join(dir, 'data'),
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      IMAGELAKE_PROCESSORS_FILE: join(dir, 'processors.json'),
      IMAGELAKE_POLL_INTERVAL: '200ms',
      IMAGELAKE_JOB_ATTEMPTS: '1',
      SEEN_FILE: join(dir, 'seen.txt'),
    };
    server = await spawnServer(env);
    customer = await createCustomer(server.url, 'Processors');
  });

  after(async () => {
    http?.child.kill('SIGKILL');
    if (server && server.child.exitCode === null && server.child.signalCode === null) {
      const exited = new Promise((r) => server.child.once('exit', r));
      server.child.kill('SIGTERM');
      await exited;
    }
  });

  it('runs module, command (Python SDK) and url (Python SDK over HTTP) processors on each upload', async () => {
    for (const bytes of [await plain(20), await plain(235), await jpeg({ width: 640, height: 480 })]) {
      ids.push((await upload(server.url, customer.apiKey, bytes)).body.id);
    }
    const [dark, bright, photo] = await Promise.all(
      ids.map((id) => settled(server.url, customer.apiKey, id)),
    );
    for (const image of [dark, bright, photo]) {
      assert.equal(image.status, 'processed', JSON.stringify(image.error));
      assert.deepEqual(image.processors, {
        'mean-color': '1.2.0',
        quality: '1.0.0',
        'quality-http': '1.0.0',
        cmd: '1.0.0',
      });
      assert.deepEqual(Object.keys(image.metadata.processors).sort(), [
        'cmd',
        'mean-color',
        'quality',
        'quality-http',
      ]);
    }
    assert.equal(dark.metadata.processors.quality.exposure, 'dark');
    assert.equal(bright.metadata.processors.quality.exposure, 'bright');
    assert.equal(
      bright.metadata.processors['quality-http'].exposure,
      'bright',
      'the HTTP kind got the preview and agrees',
    );
    assert.ok(photo.metadata.processors.quality.sharpness > dark.metadata.processors.quality.sharpness);
    assert.match(photo.metadata.processors.quality.dominant_colors[0], /^#[0-9a-f]{6}$/);

    // The derived edge map is stored next to the renditions and served like them.
    const edges = photo.renditions.find((r: { name: string }) => r.name === 'quality.edges');
    assert.ok(edges, JSON.stringify(photo.renditions));
    const response = await fetch(`${server.url}${edges.url}`, {
      headers: { authorization: `Bearer ${customer.apiKey}` },
    });
    assert.equal(response.headers.get('content-type'), 'image/png');
    const meta = await sharp(Buffer.from(await response.arrayBuffer())).metadata();
    assert.equal(meta.format, 'png');
    assert.ok(Math.max(meta.width!, meta.height!) <= 256);
  });

  it('the declared fields are analytics dimensions, and versions are in the facts', async () => {
    const { status, body } = await api(server.url, ADMIN, 'POST', '/v1/sql', {
      query: `select dimensions->>'quality.exposure' as exposure, processors->>'quality' as version, count(*)::int as images
            from analytics.facts where customer_id = '${customer.id}' group by 1, 2 order by 1`,
    });
    assert.equal(status, 200, JSON.stringify(body));
    const rows = body.rows as Array<{ exposure: string; version: string; images: number }>;
    const by = Object.fromEntries(rows.map((r) => [r.exposure, r.images]));
    assert.equal(by.dark, 1);
    assert.equal(by.bright, 1);
    assert.equal(
      rows.reduce((n, r) => n + r.images, 0),
      3,
    );
    assert.ok(rows.every((r) => r.version === '1.0.0'));
  });

  it('an optional processor that exits on one image leaves that image processed with the error noted; the next image is fine', async () => {
    const poisoned = (await upload(server.url, customer.apiKey, await plain(128, 333, 100))).body.id;
    const image = await settled(server.url, customer.apiKey, poisoned);
    assert.equal(image.status, 'processed');
    assert.equal(image.metadata.processorErrors.cmd.code, 'PROCESSOR_CRASHED');
    assert.match(image.metadata.processorErrors.cmd.message, /code 7.*giving up on this one/s);
    const next = await settled(
      server.url,
      customer.apiKey,
      (await upload(server.url, customer.apiKey, await plain(90))).body.id,
    );
    assert.equal(next.status, 'processed');
    assert.equal(next.metadata.processors.cmd.width, 160, 'a fresh process answered the next image');
    ids.push(poisoned, next.id);
  });

  it('the statistics say how each processor fared: runs, failures by code, time, versions', async () => {
    const { status, body } = await api(
      server.url,
      ADMIN,
      'GET',
      `/v1/analytics/processors?customerId=${customer.id}`,
    );
    assert.equal(status, 200, JSON.stringify(body));
    const by = Object.fromEntries(body.processors.map((p: { name: string }) => [p.name, p]));
    assert.deepEqual(Object.keys(by).sort(), ['cmd', 'mean-color', 'quality', 'quality-http']);
    assert.deepEqual(
      {
        runs: by.cmd.runs,
        ok: by.cmd.ok,
        failed: by.cmd.failed,
        errors: by.cmd.errors,
        versions: by.cmd.versions,
      },
      {
        runs: 5,
        ok: 4,
        failed: 1,
        errors: [{ code: 'PROCESSOR_CRASHED', runs: 1 }],
        versions: [{ version: '1.0.0', runs: 5 }],
      },
    );
    assert.equal(by.cmd.failureRate, 0.2);
    assert.equal(by.quality.runs, 5);
    assert.equal(by.quality.failed, 0);
    assert.ok(by.quality.avgMs > 0 && by.quality.p90Ms >= by.quality.p50Ms, JSON.stringify(by.quality));
    const today = body.overTime.filter((d: { processor: string }) => d.processor === 'cmd');
    assert.deepEqual(
      today.map((d: { runs: number; failed: number }) => [d.runs, d.failed]),
      [[5, 1]],
    );
    // Per image too, for SQL: which images a processor failed on.
    const failed = await api(server.url, ADMIN, 'POST', '/v1/sql', {
      query: `select image_id from analytics.facts where customer_id = '${customer.id}'
              and processor_runs->'cmd'->>'error' = 'PROCESSOR_CRASHED'`,
    });
    assert.deepEqual(
      failed.body.rows.map((r: { image_id: string }) => r.image_id),
      [ids[3]],
    );
  });

  it('reprocess after a version bump updates every image in retention once, and resumes as a no-op', async () => {
    server.child.kill('SIGTERM');
    await new Promise((r) => server.child.once('exit', r));
    await writeFile(join(dir, 'processors.json'), JSON.stringify(processorsFile('2.0.0')));
    server = await spawnServer(env);
    const seenBefore = (await readFile(env.SEEN_FILE!, 'utf8')).trim().split('\n').length;

    const run = await cli(['reprocess', '--processor', 'cmd', '--url', server.url], env);
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /Started reprocess run .*"cmd" over 5 images/);
    assert.match(run.out, /done\s+5\/5\s+updated 5, skipped 0, failed 0/);

    const seen = (await readFile(env.SEEN_FILE!, 'utf8')).trim().split('\n').slice(seenBefore);
    assert.equal(seen.length, 5, 'each image ran through the new version exactly once');
    assert.deepEqual(new Set(seen.map((l) => l.split(' ')[0])), new Set(ids));
    assert.ok(seen.every((l) => l.endsWith(' 2.0.0')));
    for (const id of ids) {
      const { body } = await api(server.url, customer.apiKey, 'GET', `/v1/images/${id}`);
      assert.equal(body.processors.cmd, '2.0.0');
      assert.equal(body.processors.quality, '1.0.0', 'the other processors are untouched');
      assert.equal(
        body.metadata.processorErrors.cmd,
        undefined,
        'the earlier error is gone with the new output',
      );
    }
    const { body } = await api(server.url, ADMIN, 'POST', '/v1/sql', {
      query: `select count(*)::int from analytics.facts where customer_id = '${customer.id}' and processors->>'cmd' = '2.0.0'`,
    });
    assert.equal(Number(Object.values(body.rows[0])[0]), 5, 'the facts carry the new version');

    const again = await cli(['reprocess', '--processor', 'cmd', '--url', server.url], env);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /updated 0, skipped 5, failed 0/);
    assert.equal((await readFile(env.SEEN_FILE!, 'utf8')).trim().split('\n').length, seenBefore + 5);

    const status = await cli(['reprocess', '--status', '--url', server.url], env);
    assert.match(status.out, /cmd\s+done\s+5\/5/);

    // Each reprocess run is a run in the statistics, under its version; the skipped ones are not.
    const stats = await api(server.url, ADMIN, 'GET', `/v1/analytics/processors?customerId=${customer.id}`);
    const cmd = stats.body.processors.find((p: { name: string }) => p.name === 'cmd');
    assert.deepEqual(cmd.versions, [
      { version: '1.0.0', runs: 5 },
      { version: '2.0.0', runs: 5 },
    ]);
    assert.equal(cmd.runs, 10);
  });

  it('the API lists the processors and runs a forced reprocess of the Python processor', async () => {
    const listed = await api(server.url, ADMIN, 'GET', '/v1/processors');
    assert.deepEqual(
      listed.body.processors.map((p: { name: string; kind: string }) => `${p.name}:${p.kind}`),
      ['mean-color:module', 'quality:command', 'quality-http:url', 'cmd:command'],
    );
    const unknown = await api(server.url, ADMIN, 'POST', '/v1/reprocess', { processor: 'nope' });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.code, 'PROCESSOR_UNKNOWN');
    const forbidden = await api(server.url, customer.apiKey, 'POST', '/v1/reprocess', {
      processor: 'quality',
    });
    assert.equal(forbidden.status, 403);

    const started = await api(server.url, ADMIN, 'POST', '/v1/reprocess', {
      processor: 'quality',
      force: true,
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    assert.equal(started.body.total, 5);
    const done = await until('the forced run', async () => {
      const { body } = await api(server.url, ADMIN, 'GET', `/v1/reprocess/${started.body.id}`);
      return body.status === 'done' && body;
    });
    assert.equal(done.updated, 5, JSON.stringify(done));
    const { body: image } = await api(server.url, customer.apiKey, 'GET', `/v1/images/${ids[2]}`);
    assert.ok(
      image.renditions.some((r: { name: string }) => r.name === 'quality.edges'),
      'the derived image is kept',
    );

    // A service fed the preview is fed the stored one again: the same bytes give the same answer.
    const before = image.metadata.processors['quality-http'];
    const http = await api(server.url, ADMIN, 'POST', '/v1/reprocess', {
      processor: 'quality-http',
      force: true,
    });
    assert.equal(http.status, 202, JSON.stringify(http.body));
    const httpDone = await until('the forced run of the HTTP processor', async () => {
      const { body } = await api(server.url, ADMIN, 'GET', `/v1/reprocess/${http.body.id}`);
      return body.status === 'done' && body;
    });
    assert.equal(httpDone.updated, 5, JSON.stringify(httpDone));
    const { body: after } = await api(server.url, customer.apiKey, 'GET', `/v1/images/${ids[2]}`);
    assert.deepEqual(after.metadata.processors['quality-http'], before);
  });

  it('processors test runs the Python example on one image and prints its result', async () => {
    const image = join(dir, 'photo.jpg');
    await writeFile(image, await jpeg({ width: 400, height: 300 }));
    const result = await cli(
      ['processors', 'test', quality, image, '--config', '{"edges": true}', '--out', join(dir, 'out')],
      {
        IMAGELAKE_PROCESSOR_PYTHON: python,
      },
    );
    assert.equal(result.code, 0, result.out);
    const printed = JSON.parse(
      result.out.slice(result.out.indexOf('{\n'), result.out.lastIndexOf('\n}') + 2),
    );
    assert.equal(printed.processor.name, 'quality');
    assert.equal(printed.ok, true);
    assert.equal(typeof printed.metadata.sharpness, 'number');
    assert.equal(printed.images[0].name, 'edges');
    assert.equal((await sharp(printed.images[0].savedTo).metadata()).format, 'png');
  });
});
