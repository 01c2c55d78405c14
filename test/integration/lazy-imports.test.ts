import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ADMIN, createCustomer, settled, spawnServer, upload } from './harness.ts';

// A process loads the heavy dependencies it may never use only when it needs them (docs/architecture.md,
// "How storage is opened"): each would be heap every process holds and marks at every full collection.
const HEAVY = ['@aws-sdk/', '@tus/s3-store', '@platformatic/kafka', '@duckdb/', 'heic-decode', 'libheif-js'];

describe('what a process on a folder lake without Kafka loads', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  // The api, worker and webhooks roles: the scheduler's role runs the Parquet export, which loads
  // DuckDB when it runs (and then holds it).
  it('processes an image without loading the AWS SDK, the Kafka client, DuckDB or libheif', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imagelake-lazy-'));
    dirs.push(dir);
    const loads = join(dir, 'loads.txt');
    const hook = fileURLToPath(new URL('./record-loads.mjs', import.meta.url));
    const server = await spawnServer(
      {
        IMAGELAKE_DATA_DIR: join(dir, 'data'),
        IMAGELAKE_ADMIN_TOKEN: ADMIN,
        IMAGELAKE_TEST_LOADS: loads,
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${hook}`.trim(),
      },
      ['api', 'worker', 'webhooks'],
    );
    try {
      // Every role's path runs once: a landing, the pipeline in a worker thread, the outcome.
      const customer = await createCustomer(server.url, 'Lazy');
      const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#3a7' } })
        .png()
        .toBuffer();
      const landed = await upload(server.url, customer.apiKey, png);
      assert.equal(landed.status, 202, JSON.stringify(landed.body));
      assert.equal((await settled(server.url, customer.apiKey, landed.body.id)).status, 'processed');
    } finally {
      server.child.kill('SIGTERM');
      await once(server.child, 'exit');
    }
    const lines = (await readFile(loads, 'utf8')).split('\n').filter(Boolean);
    const urls = lines.map((l) => l.slice(l.indexOf(' ') + 1));
    // The record saw the server and the pipeline load, so an absence below means something.
    assert.ok(
      urls.some((u) => u.endsWith('/src/server.ts')),
      'the main thread was recorded',
    );
    assert.ok(
      lines.some((l) => l.startsWith('worker ') && l.endsWith('/src/processing/worker.ts')),
      'a pipeline thread was recorded',
    );
    for (const name of HEAVY)
      assert.deepEqual(
        urls.filter((u) => u.includes(`/node_modules/${name}`)),
        [],
        `${name} was loaded by a process that does not use it`,
      );
  });
});
