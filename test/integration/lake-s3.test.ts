import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { DeleteBucketLifecycleCommand, GetBucketLifecycleConfigurationCommand } from '@aws-sdk/client-s3';
import { S3Lake } from '../../src/lake/s3.ts';
import { jpeg } from '../fixtures/images.ts';
import { lakeContract } from '../lake/contract.ts';
import { ADMIN, api, cli, createCustomer, settled, startTestServer, upload } from './harness.ts';
import { s3Service } from './s3-service.ts';

const service = s3Service();
after(() => service.stop());
for (const [k, v] of Object.entries(service.env)) if (k.startsWith('AWS_')) process.env[k] = v;

const lakeAt = (prefix: string) =>
  S3Lake.fromUrl(`s3://imagelake/${prefix}`, { ...process.env, ...service.env });

// The same contract the filesystem lake passes, against a real S3 server, each test in a fresh prefix.
lakeContract('S3 (MinIO)', async () => lakeAt(`contract-${randomUUID()}`));

describe('the S3 lake', () => {
  it('uploads large streams in parts and reads them back whole', async () => {
    const lake = lakeAt(`large-${randomUUID()}`);
    const part = Buffer.alloc(5 * 1024 * 1024, 7);
    const bytes = await lake.put('big.bin', Readable.from([part, part, part, Buffer.from('end')]));
    assert.equal(bytes, 15 * 1024 * 1024 + 3);
    const back = await lake.getBuffer('big.bin');
    assert.equal(back.length, bytes);
    assert.equal(back.subarray(-3).toString(), 'end');
    assert.equal((await lake.head('big.bin'))?.bytes, bytes);
  });

  it('deletes in batches', async () => {
    const lake = lakeAt(`batch-${randomUUID()}`);
    const keys = Array.from({ length: 25 }, (_, i) => `k/${i}`);
    for (const key of keys) await lake.put(key, Buffer.from(key));
    await lake.deleteMany([...keys, 'k/absent']);
    const left: string[] = [];
    for await (const o of lake.list('k/')) left.push(o.key);
    assert.deepEqual(left, []);
  });

  it('presigns a PUT that a plain HTTP client can use', async () => {
    const lake = lakeAt(`presign-${randomUUID()}`);
    const url = await lake.presignPut('direct/upload.jpg', 300);
    const body = await jpeg();
    const response = await fetch(url, { method: 'PUT', body: new Uint8Array(body) });
    assert.equal(response.status, 200);
    assert.deepEqual(await lake.getBuffer('direct/upload.jpg'), body);
  });
});

describe('lifecycle backstop on S3', () => {
  it('applies the retention rules, prefixed with the lake folder, to the bucket', async () => {
    const prefix = `lifecycle-${randomUUID()}`;
    const { code, out } = await cli(['retention', 'lifecycle', '--apply'], {
      ...service.env,
      IMAGELAKE_LAKE_URL: `s3://imagelake/${prefix}`,
      IMAGELAKE_RETENTION: '7d',
    });
    assert.equal(code, 0, out);
    const lake = lakeAt(prefix);
    const { Rules } = await lake.client.send(
      new GetBucketLifecycleConfigurationCommand({ Bucket: 'imagelake' }),
    );
    assert.deepEqual(
      Rules?.map((r) => [r.Filter?.Prefix, r.Expiration?.Days]).sort(),
      [`${prefix}/metadata/`, `${prefix}/raw/`, `${prefix}/renditions/`, `${prefix}/tus/`].map((p) => [p, 8]),
    );
    await lake.client.send(new DeleteBucketLifecycleCommand({ Bucket: 'imagelake' }));
  });
});

describe('the platform on the S3 lake', () => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  before(async () => {
    t = await startTestServer({
      ...service.env,
      IMAGELAKE_LAKE_URL: `s3://imagelake/platform-${randomUUID()}`,
    });
  });
  after(() => t?.stop());

  it('takes direct uploads straight into the bucket with a presigned URL', async () => {
    const c = await createCustomer(t.url, 'Direct');
    const session = (await api(t.url, c.apiKey, 'POST', '/v1/uploads', { filename: 'huge.jpg' })).body;
    assert.equal(session.authorization, 'none');
    assert.match(session.uploadUrl, /^http:\/\/127\.0\.0\.1:\d+\/imagelake\//);
    const put = await fetch(session.uploadUrl, {
      method: 'PUT',
      body: new Uint8Array(await jpeg({ seed: 8 })),
    });
    assert.equal(put.status, 200);
    const done = await api(t.url, c.apiKey, 'POST', `/v1/uploads/${session.id}/complete`);
    assert.equal(done.status, 202, JSON.stringify(done.body));
    assert.equal((await settled(t.url, c.apiKey, done.body.id)).status, 'processed');
    const staged: string[] = [];
    for await (const o of t.server.lake.list('uploads/')) staged.push(o.key);
    assert.deepEqual(staged, [], 'the staged bytes are gone once landed');
  });

  it('lands, processes, serves and erases images with every object in the bucket', async () => {
    assert.match(t.server.lake.describe(), /^s3:\/\/imagelake\/platform-/);
    const c = await createCustomer(t.url, 'On S3');
    const image = await settled(
      t.url,
      c.apiKey,
      (await upload(t.url, c.apiKey, await jpeg({ seed: 4 }))).body.id,
    );
    assert.equal(image.status, 'processed');
    const objects: string[] = [];
    for (const area of ['raw/', 'renditions/', 'metadata/'])
      for await (const o of t.server.lake.list(area)) if (o.key.includes(image.id)) objects.push(o.key);
    assert.equal(objects.length, 4, 'original, two renditions, sidecar');
    const preview = await fetch(`${t.url}${image.renditions[1].url}`, {
      headers: { authorization: `Bearer ${c.apiKey}` },
    });
    assert.equal(preview.headers.get('content-type'), 'image/webp');
    const receipt = (await api(t.url, ADMIN, 'DELETE', `/v1/customers/${c.id}/images`)).body;
    assert.equal(receipt.deleted.raw.count, 1);
    const left: string[] = [];
    for (const area of ['raw/', 'renditions/', 'metadata/'])
      for await (const o of t.server.lake.list(area))
        if (o.key.includes(`customer=${c.id}`)) left.push(o.key);
    assert.deepEqual(left, []);
  });
});
