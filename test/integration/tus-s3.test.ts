import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import type { S3Lake } from '../../src/lake/s3.ts';
import { largeJpeg } from '../fixtures/images.ts';
import { createCustomer, DAY, startTestServer, TestClock, type TestServer } from './harness.ts';
import { s3Service } from './s3-service.ts';
import { tusFindings, tusHead, tusObjects, tusSend } from './tus-client.ts';

/**
 * What the S3 lake adds to resumable uploads: parts wait in an S3 multipart upload, which no
 * listing of objects shows, so an abandoned one must be aborted by the purge, and its bytes counted.
 */
describe('tus on the S3 lake: refusals and abandoned multipart uploads', () => {
  const s3 = s3Service();
  const clock = new TestClock();
  const prefix = `tus-s3-${randomUUID()}`;
  let t: TestServer;
  let key: string;

  before(async () => {
    // The AWS SDK reads its credentials from the environment, in this process as in a server's.
    for (const [name, value] of Object.entries(s3.env))
      if (name.startsWith('AWS_')) process.env[name] = value;
    t = await startTestServer(
      { ...s3.env, IMAGELAKE_LAKE_URL: `s3://imagelake/${prefix}` },
      undefined,
      clock,
    );
    key = (await createCustomer(t.url, 'S3')).apiKey;
  });
  after(async () => {
    await t?.stop();
    s3.stop();
  });

  /** The multipart uploads of one upload's object (MinIO lists them by exact key only). */
  async function multipartUploads(uploadUrl: string): Promise<string[]> {
    const lake = t.server.lake as S3Lake;
    const id = uploadUrl.slice(uploadUrl.lastIndexOf('/') + 1);
    const listed = await lake.client.send(
      new ListMultipartUploadsCommand({ Bucket: lake.bucket, Prefix: `${lake.prefix}tus/${id}` }),
    );
    return (listed.Uploads ?? []).map((u) => u.Key!);
  }

  it('refuses a completed upload that is not an image with 415 and keeps nothing', async () => {
    const run = await tusSend(t.url, key, randomBytes(6 * 1024 * 1024), {
      metadata: { filename: 'data.bin' },
    });
    assert.equal(run.refusedWith, 415, run.refusal);
    assert.deepEqual(await tusObjects(t.server.lake), []);
    assert.deepEqual(await multipartUploads(run.url), []);
  });

  it('aborts an abandoned upload at the purge: its parts and objects go, counted as kind upload', async () => {
    const photo = await largeJpeg(14_000_000);
    const started = await tusSend(t.url, key, photo, { stopAt: 0.5, chunkSize: 5 * 1024 * 1024 + 1000 });
    const head = await tusHead(started.url, key);
    const offset = Number(head.headers.get('upload-offset'));
    assert.ok(offset > 5 * 1024 * 1024 && offset < photo.length, `${offset} of ${photo.length}`);
    assert.equal((await multipartUploads(started.url)).length, 1, 'its parts wait in a multipart upload');

    clock.advance(DAY + 60_000);
    assert.ok((await tusFindings(t.server, clock)).some((f) => f.kind === 'expired-object'));

    const receipt = await t.server.purgeNow();
    assert.ok(receipt?.body.deleted.upload, JSON.stringify(receipt?.body.deleted));
    assert.ok(
      receipt.body.deleted.upload.bytes >= offset,
      `${receipt.body.deleted.upload.bytes} bytes counted`,
    );
    assert.deepEqual(await multipartUploads(started.url), []);
    assert.deepEqual(await tusObjects(t.server.lake), []);
    assert.deepEqual(await tusFindings(t.server, clock), []);
  });
});
