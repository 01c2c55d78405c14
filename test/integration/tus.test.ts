import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { largeJpeg } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  createCustomer,
  DAY,
  settled,
  startTestServer,
  TestClock,
  type TestServer,
  until,
  upload,
} from './harness.ts';
import { tusFindings, tusHead, tusObjects, tusPatch, tusSend } from './tus-client.ts';

describe('resumable uploads (tus) on the folder lake', () => {
  const clock = new TestClock();
  let t: TestServer;
  let acme: { id: string; apiKey: string };
  let other: { id: string; apiKey: string };

  before(async () => {
    t = await startTestServer({}, undefined, clock);
    acme = await createCustomer(t.url, 'Acme');
    other = await createCustomer(t.url, 'Other');
  });
  after(() => t.stop());

  it('aborted at about half, resumes from the offset the server kept and lands with the right checksum', async () => {
    const photo = await largeJpeg(30_000_000);
    // Chunks of 1 MiB: over loopback a single PATCH is sent whole before the client hears of its progress.
    const first = await tusSend(t.url, acme.apiKey, photo, { stopAt: 0.5, chunkSize: 1024 * 1024 });
    assert.equal(first.imageId, undefined);
    const head = await tusHead(first.url, acme.apiKey);
    assert.equal(head.status, 200);
    const offset = Number(head.headers.get('upload-offset'));
    assert.ok(offset > 0 && offset < photo.length, `the server kept ${offset} of ${photo.length} bytes`);
    assert.equal(Number(head.headers.get('upload-length')), photo.length);

    const resumed = await tusSend(t.url, acme.apiKey, photo, { uploadUrl: first.url });
    const again = await tusHead(first.url, acme.apiKey);
    assert.equal(resumed.refusedWith, undefined, resumed.refusal);
    assert.ok(resumed.imageId, 'the final answer carries Imagelake-Image-Id');

    // HEAD on the upload URL keeps answering the image, after its tus bytes are gone.
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('imagelake-image-id'), resumed.imageId);
    assert.equal(Number(again.headers.get('upload-offset')), photo.length);
    // Its tus objects go once the final answer is sent.
    await until(
      'the landed upload leaves no tus objects',
      async () => (await tusObjects(t.server.lake)).length === 0,
      10_000,
    );

    const image = await settled(t.url, acme.apiKey, resumed.imageId!, 120_000);
    assert.equal(image.status, 'processed', JSON.stringify(image.error));
    assert.equal(image.checksum, createHash('sha256').update(photo).digest('hex'));
    assert.equal(image.filename, 'photo.jpg');
  });

  it("answers another customer's key 404 on an upload, whatever the method", async () => {
    const photo = await largeJpeg(2_000_000);
    const started = await tusSend(t.url, acme.apiKey, photo, { stopAt: 0.3, chunkSize: 256 * 1024 });
    assert.equal((await tusHead(started.url, other.apiKey)).status, 404);
    const patch = await tusPatch(started.url, other.apiKey, 0, new Uint8Array(10));
    assert.equal(patch.status, 404);
    assert.equal((await patch.json()).error.code, 'TUS_UPLOAD_NOT_FOUND');
    const del = await fetch(started.url, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${other.apiKey}`, 'tus-resumable': '1.0.0' },
    });
    assert.equal(del.status, 404);
    // The owner still resumes it.
    const done = await tusSend(t.url, acme.apiKey, photo, { uploadUrl: started.url });
    assert.ok(done.imageId, done.refusal);
  });

  it('terminates an upload: its bytes go and the URL answers 404', async () => {
    const photo = await largeJpeg(2_000_000);
    const started = await tusSend(t.url, acme.apiKey, photo, { stopAt: 0.3, chunkSize: 256 * 1024 });
    assert.ok((await tusObjects(t.server.lake)).length > 0);
    const del = await fetch(started.url, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${acme.apiKey}`, 'tus-resumable': '1.0.0' },
    });
    assert.equal(del.status, 204);
    assert.equal((await tusHead(started.url, acme.apiKey)).status, 404);
    assert.deepEqual(await tusObjects(t.server.lake), []);
  });

  it('refuses a completed upload that is not an image with 415 and keeps none of its bytes', async () => {
    const garbage = randomBytes(1_000_000);
    const run = await tusSend(t.url, acme.apiKey, garbage, {
      metadata: { filename: 'notes.txt', contentType: 'text/plain' },
    });
    assert.equal(run.refusedWith, 415, run.refusal);
    assert.equal(JSON.parse(run.refusal!).error.code, 'UNSUPPORTED_FORMAT');
    assert.deepEqual(await tusObjects(t.server.lake), []);
    assert.equal((await tusHead(run.url, acme.apiKey)).status, 404);
  });

  it('keeps the bytes through a refusal that passes (a used-up quota), and the next HEAD lands them', async () => {
    const quota = await createCustomer(t.url, 'Quota');
    const photo = await largeJpeg(2_000_000);
    const started = await tusSend(t.url, quota.apiKey, photo, { stopAt: 0.3, chunkSize: 256 * 1024 });
    assert.equal((await upload(t.url, quota.apiKey, await largeJpeg(100_000))).status, 202);
    const limit = (monthlyImages: number | null) =>
      api(t.url, ADMIN, 'PATCH', `/v1/customers/${quota.id}`, { limits: { monthlyImages } });
    assert.equal((await limit(1)).status, 200);

    const refused = await tusSend(t.url, quota.apiKey, photo, { uploadUrl: started.url });
    assert.equal(refused.refusedWith, 403, refused.refusal);
    assert.equal(JSON.parse(refused.refusal!).error.code, 'QUOTA_EXCEEDED');
    assert.ok((await tusObjects(t.server.lake)).length > 0, 'the bytes wait for the quota');

    assert.equal((await limit(null)).status, 200);
    // A customer's limits are read again within a second on every process.
    await new Promise((r) => setTimeout(r, 1100));
    const head = await tusHead(started.url, quota.apiKey);
    assert.equal(head.status, 200);
    const id = head.headers.get('imagelake-image-id');
    assert.ok(id, 'the HEAD landed the complete upload');
    assert.equal(
      (await settled(t.url, quota.apiKey, id)).checksum,
      createHash('sha256').update(photo).digest('hex'),
    );
    assert.deepEqual(await tusObjects(t.server.lake), []);
  });

  it('expires an abandoned upload: 410 on resume, the audit finds it, the purge deletes it as kind upload', async () => {
    const photo = await largeJpeg(2_000_000);
    const started = await tusSend(t.url, acme.apiKey, photo, { stopAt: 0.3, chunkSize: 256 * 1024 });
    const held = (await tusObjects(t.server.lake)).length;
    assert.ok(held > 0);
    clock.advance(DAY + 60_000);

    // (tus-js-client would start a new upload on this 410, as the protocol intends.)
    const late = await tusHead(started.url, acme.apiKey);
    assert.equal(late.status, 410);
    const patch = await tusPatch(started.url, acme.apiKey, 0, new Uint8Array(10));
    assert.equal(patch.status, 410);
    assert.equal((await patch.json()).error.code, 'TUS_UPLOAD_EXPIRED');

    const expired = (await tusFindings(t.server, clock)).filter((f) => f.kind === 'expired-object');
    assert.equal(expired.length, held, JSON.stringify(expired));

    const receipt = await t.server.purgeNow();
    assert.ok(receipt);
    assert.ok(receipt.body.deleted.upload, JSON.stringify(receipt.body.deleted));
    assert.ok(receipt.body.deleted.upload.count >= held);
    assert.ok(receipt.body.deleted.upload.bytes > 0);
    assert.deepEqual(await tusObjects(t.server.lake), []);
    assert.equal((await tusHead(started.url, acme.apiKey)).status, 404);
    assert.deepEqual(await tusFindings(t.server, clock), []);
  });
});
