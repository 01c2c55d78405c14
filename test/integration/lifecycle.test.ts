import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FsLake } from '../../src/lake/fs.ts';
import { jpeg, png } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  createCustomer,
  settled,
  spawnServer,
  startTestServer,
  until,
  upload,
} from './harness.ts';

const slowProcessor = fileURLToPath(new URL('../fixtures/processors/slow.ts', import.meta.url));

describe('a crash while processing', () => {
  it('SIGKILL mid-run, restart: every accepted image ends processed exactly once', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-kill-'));
    const env = {
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      IMAGELAKE_PROCESSORS: slowProcessor,
      SLOW_PROCESSOR_MS: '300',
      IMAGELAKE_WORKER_CONCURRENCY: '2',
      IMAGELAKE_JOB_LEASE: '3s',
      IMAGELAKE_JOB_TIMEOUT: '2s',
      IMAGELAKE_POLL_INTERVAL: '200ms',
    };
    let first = await spawnServer(env);
    try {
      const customer = await createCustomer(first.url, 'Crashy');
      const ids: string[] = [];
      for (let i = 0; i < 24; i++)
        ids.push(
          (await upload(first.url, customer.apiKey, await jpeg({ width: 200, height: 150, seed: i }))).body
            .id,
        );
      // Kill once some, not all, images are done.
      await until('some images processed', async () => {
        const { body } = await api(
          first.url,
          customer.apiKey,
          'GET',
          '/v1/images?status=processed&limit=500',
        );
        return body.images.length >= 3;
      });
      first.child.kill('SIGKILL');
      await new Promise((resolve) => first.child.once('exit', resolve));

      first = await spawnServer(env);
      for (const id of ids) {
        const image = await settled(first.url, customer.apiKey, id, 90_000);
        assert.equal(image.status, 'processed', `${id}: ${JSON.stringify(image.error)}`);
        assert.equal(image.processors.slow, '1.0.0');
      }
      const today = new Date().toISOString().slice(0, 10);
      const { body } = await api(
        first.url,
        ADMIN,
        'GET',
        `/v1/stats?from=${today}&to=${today}&groupBy=status`,
      );
      assert.deepEqual(
        body.rows.map((r: { status: string; images: number }) => [r.status, r.images]),
        [['processed', 24]],
        'each image is counted once, however often it was attempted',
      );
    } finally {
      first.child.kill('SIGTERM');
      await new Promise((resolve) => first.child.once('exit', resolve));
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('graceful shutdown and the first start', () => {
  it('prints a generated admin token once, stores only its hash, and stops cleanly on SIGTERM', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-token-'));
    const env = { IMAGELAKE_DATA_DIR: dataDir, IMAGELAKE_ADMIN_TOKEN: '' };
    try {
      const first = await spawnServer(env);
      const token = /IMAGELAKE_ADMIN_TOKEN=(il_admin_\S+)/.exec(first.output())?.[1];
      assert.ok(token, 'the token is printed at first start');
      assert.equal((await api(first.url, token, 'GET', '/v1/customers')).status, 200);
      first.child.kill('SIGTERM');
      const code = await new Promise((resolve) => first.child.once('exit', resolve));
      assert.equal(code, 0);

      const second = await spawnServer(env);
      assert.doesNotMatch(second.output(), /IMAGELAKE_ADMIN_TOKEN=/, 'never printed again');
      assert.equal((await api(second.url, token, 'GET', '/v1/customers')).status, 200);
      second.child.kill('SIGTERM');
      await new Promise((resolve) => second.child.once('exit', resolve));
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('retention', () => {
  it('purges every copy of an expired image from the lake and the catalog, and keeps the daily counts', async () => {
    const t = await startTestServer({ IMAGELAKE_RETENTION: '4s', IMAGELAKE_PURGE_INTERVAL: '1s' });
    try {
      const customer = await createCustomer(t.url, 'Short memory');
      const ids: string[] = [];
      for (const bytes of [await jpeg({ gps: true }), await png(), await jpeg({ seed: 3 })]) {
        ids.push((await upload(t.url, customer.apiKey, bytes)).body.id);
      }
      for (const id of ids) assert.equal((await settled(t.url, customer.apiKey, id)).status, 'processed');
      const lake = new FsLake(join(t.dataDir, 'lake'));
      const objects = async () => {
        const keys: string[] = [];
        for (const area of ['raw/', 'renditions/', 'metadata/'])
          for await (const o of lake.list(area)) keys.push(o.key);
        return keys;
      };
      assert.equal((await objects()).length, 3 * 4, 'original, two renditions and a sidecar each');

      await until('the purge', async () => (await objects()).length === 0, 20_000);
      for (const id of ids)
        assert.equal((await api(t.url, customer.apiKey, 'GET', `/v1/images/${id}`)).status, 404);
      assert.deepEqual(await lake.children('raw/'), [], 'no empty partition folders left behind');
      const listed = (await api(t.url, customer.apiKey, 'GET', '/v1/images')).body.images;
      assert.equal(listed.length, 0);

      const { body } = await api(
        t.url,
        ADMIN,
        'GET',
        `/v1/stats?groupBy=customer,format&customerId=${customer.id}`,
      );
      assert.deepEqual(
        body.rows.map((r: { format: string; images: number }) => [r.format, r.images]),
        [
          ['jpeg', 2],
          ['png', 1],
        ],
      );
      // Objects go before the run is sealed and counted: wait for the count, do not race it.
      const metrics = await until('the purge counted', async () => {
        const text = await (await fetch(`${t.url}/metrics`)).text();
        return /^imagelake_purged_images_total 3$/m.test(text) ? text : undefined;
      });
      assert.match(metrics, /^imagelake_purge_lag_seconds 0$/m);
    } finally {
      await t.stop();
    }
  });

  it('sweeps objects a crashed landing left in a day that has expired', async () => {
    const t = await startTestServer({ IMAGELAKE_RETENTION: '1d', IMAGELAKE_PURGE_INTERVAL: '1s' });
    try {
      const lake = new FsLake(join(t.dataDir, 'lake'));
      await lake.put('raw/dt=2020-01-01/customer=gone/orphan.jpg', await jpeg());
      const today = new Date().toISOString().slice(0, 10);
      await lake.put(`raw/dt=${today}/customer=x/kept-until-it-expires.jpg`, await jpeg());
      await until(
        'the orphan sweep',
        async () => !(await lake.head('raw/dt=2020-01-01/customer=gone/orphan.jpg')),
        10_000,
      );
      assert.ok(await lake.head(`raw/dt=${today}/customer=x/kept-until-it-expires.jpg`));
    } finally {
      await t.stop();
    }
  });
});

describe('backpressure', () => {
  it('answers 429 QUEUE_FULL when the queue is deeper than its limit', async () => {
    // The customer's own share as large as the whole queue: this is the global limit (the share's
    // own refusal is pinned in customer-limits.test.ts). It refuses those who fill the queue.
    const t = await startTestServer(
      { IMAGELAKE_MAX_QUEUE_DEPTH: '2', IMAGELAKE_MAX_QUEUE_DEPTH_PER_CUSTOMER: '2' },
      ['api'],
    );
    try {
      const customer = await createCustomer(t.url, 'Busy');
      assert.equal((await upload(t.url, customer.apiKey, await jpeg({ seed: 1 }))).status, 202);
      assert.equal((await upload(t.url, customer.apiKey, await jpeg({ seed: 2 }))).status, 202);
      await new Promise((r) => setTimeout(r, 1100));
      const full = await upload(t.url, customer.apiKey, await jpeg({ seed: 3 }));
      assert.equal(full.status, 429);
      assert.equal(full.body.error.code, 'QUEUE_FULL');
      assert.match(
        full.body.error.message,
        /whole queue is full \(2 images waiting\) and this customer has at least 2/,
      );
      // A customer with (almost) nothing waiting is not refused because others filled the queue:
      // fewer than a hundredth of the limit (here 1) still lands.
      const other = await createCustomer(t.url, 'Quiet');
      assert.equal((await upload(t.url, other.apiKey, await jpeg({ seed: 4 }))).status, 202);
      const second = await upload(t.url, other.apiKey, await jpeg({ seed: 5 }));
      assert.equal(second.status, 429, 'with one waiting it holds its hundredth: refused like the others');
      assert.equal(second.body.error.code, 'QUEUE_FULL');
    } finally {
      await t.stop();
    }
  });
});
