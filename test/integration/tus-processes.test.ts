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
 * process SIGKILLed mid-upload, the upload resumed on another from the offset the lake kept, then
 * the killed one started again and answering for it too.
 */
let root: string;
let postgres: EmbeddedDatabase;
const s3 = s3Service();
const children: ChildProcess[] = [];

before(async () => {
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
    it('resumes on another process after the first is SIGKILLed mid-upload, and lands once', async () => {
      const env = {
        ...(lake === 's3' ? s3.env : {}),
        IMAGELAKE_DATABASE_URL: postgres.url,
        IMAGELAKE_LAKE_URL:
          lake === 's3' ? `s3://imagelake/tus-${randomUUID()}` : `file://${join(root, 'lake')}`,
        IMAGELAKE_ADMIN_TOKEN: ADMIN,
        IMAGELAKE_DATA_DIR: join(root, 'unused'),
        IMAGELAKE_POLL_INTERVAL: '200ms',
      };
      const killed = await spawnServer(env, ['api']);
      children.push(killed.child);
      const other = await spawnServer(env);
      children.push(other.child);
      const customer = await createCustomer(other.url, `Tus ${lake}`);
      const photo = await largeJpeg(30_000_000);

      const first = await tusSend(killed.url, customer.apiKey, photo, {
        chunkSize: 6 * 1024 * 1024,
        stopAt: 0.5,
        onStop: () => killed.child.kill('SIGKILL'),
      });
      assert.equal(first.imageId, undefined);
      const elsewhere = first.url.replace(killed.url, other.url);
      const head = await tusHead(elsewhere, customer.apiKey);
      assert.equal(head.status, 200);
      const offset = Number(head.headers.get('upload-offset'));
      assert.ok(offset > 0 && offset < photo.length, `the lake kept ${offset} of ${photo.length} bytes`);

      const resumed = await tusSend(other.url, customer.apiKey, photo, {
        uploadUrl: elsewhere,
        chunkSize: 6 * 1024 * 1024,
      });
      assert.equal(resumed.refusedWith, undefined, resumed.refusal);
      assert.ok(resumed.imageId);
      const image = await settled(other.url, customer.apiKey, resumed.imageId!, 120_000);
      assert.equal(image.status, 'processed', JSON.stringify(image.error));
      assert.equal(image.checksum, createHash('sha256').update(photo).digest('hex'));

      // Started again, the killed process answers for the upload as well.
      const again = await spawnServer(env, ['api']);
      children.push(again.child);
      const landed = await tusHead(first.url.replace(killed.url, again.url), customer.apiKey);
      assert.equal(landed.status, 200);
      assert.equal(landed.headers.get('imagelake-image-id'), resumed.imageId);
      again.child.kill('SIGTERM');
      other.child.kill('SIGTERM');
    });
  });
}
