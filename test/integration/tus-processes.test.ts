import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { largeJpeg } from '../fixtures/images.ts';
import { ADMIN, createCustomer, settled, spawnServer } from './harness.ts';
import { s3Service } from './s3-service.ts';
import { tusHead, tusSend } from './tus-client.ts';

/**
 * Resumable uploads across api processes sharing one PostgreSQL and one lake, on both lakes: an api
 * process SIGKILLed mid-upload, another started, and the upload resumed there from the offset the
 * lake kept.
 */
let root: string;
let postgres: EmbeddedDatabase;
const s3 = s3Service();
const children: ChildProcess[] = [];

let photo: Buffer;

before(async () => {
  photo = await largeJpeg(30_000_000);
  root = await mkdtemp(join(tmpdir(), 'imagelake-tus-'));
  postgres = await startEmbeddedPostgres(join(root, 'pg'), pino({ level: 'silent' }));
});

after(async () => {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const child of running) child.kill('SIGTERM');
  await Promise.all(running.map((c) => new Promise((r) => c.once('exit', r))));
  await postgres?.stop();
  s3.stop();
  await rm(root, { recursive: true, force: true });
});

for (const lake of ['folder', 's3'] as const) {
  describe(`tus on several api processes, ${lake} lake`, () => {
    it('resumes on a process started after the first was SIGKILLed mid-upload, and lands once', async () => {
      const env = {
        ...(lake === 's3' ? s3.env : {}),
        IMAGELAKE_DATABASE_URL: postgres.url,
        IMAGELAKE_LAKE_URL:
          lake === 's3' ? `s3://imagelake/tus-${randomUUID()}` : `file://${join(root, 'lake')}`,
        IMAGELAKE_ADMIN_TOKEN: ADMIN,
        IMAGELAKE_DATA_DIR: join(root, 'unused'),
        IMAGELAKE_POLL_INTERVAL: '200ms',
      };
      const killed = await spawnServer(env);
      children.push(killed.child);
      const customer = await createCustomer(killed.url, `Tus ${lake}`);

      const first = await tusSend(killed.url, customer.apiKey, photo, {
        chunkSize: 6 * 1024 * 1024,
        stopAt: 0.5,
        onStop: () => killed.child.kill('SIGKILL'),
      });
      assert.equal(first.imageId, undefined);

      // Another process (on another port), sharing only PostgreSQL and the lake with the killed one.
      const again = await spawnServer(env);
      children.push(again.child);
      const elsewhere = first.url.replace(killed.url, again.url);
      const head = await tusHead(elsewhere, customer.apiKey);
      assert.equal(head.status, 200);
      const offset = Number(head.headers.get('upload-offset'));
      assert.ok(offset > 0 && offset < photo.length, `the lake kept ${offset} of ${photo.length} bytes`);

      const resumed = await tusSend(again.url, customer.apiKey, photo, {
        uploadUrl: elsewhere,
        chunkSize: 6 * 1024 * 1024,
      });
      assert.equal(resumed.refusedWith, undefined, resumed.refusal);
      assert.ok(resumed.imageId);
      const image = await settled(again.url, customer.apiKey, resumed.imageId!, 120_000);
      assert.equal(image.status, 'processed', JSON.stringify(image.error));
      assert.equal(image.checksum, createHash('sha256').update(photo).digest('hex'));
      const landed = await tusHead(elsewhere, customer.apiKey);
      assert.equal(landed.headers.get('imagelake-image-id'), resumed.imageId);
      again.child.kill('SIGTERM');
    });
  });
}
