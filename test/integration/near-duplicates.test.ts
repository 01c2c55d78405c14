import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import sharp from 'sharp';
import { DEFAULT_NEAR_DISTANCE } from '../../src/config/config.ts';
import { drawPhoto, drawScene } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  cli,
  createCustomer,
  settled,
  startTestServer,
  type TestServer,
  upload,
} from './harness.ts';

/** POST /v1/similar with image bytes. */
async function searchBy(url: string, key: string, bytes: Buffer, query = '') {
  const response = await fetch(`${url}/v1/similar${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(bytes),
  });
  return { status: response.status, body: (await response.json()) as any };
}

async function landed(t: TestServer, key: string, bytes: Buffer): Promise<any> {
  const answer = await upload(t.url, key, bytes);
  assert.equal(answer.status, 202, JSON.stringify(answer.body));
  const image = await settled(t.url, key, answer.body.id);
  assert.equal(image.status, 'processed', JSON.stringify(image));
  return image;
}

async function imageCount(t: TestServer, key: string): Promise<number> {
  return (await api(t.url, key, 'GET', '/v1/images?limit=500')).body.images.length;
}

describe('near-duplicates', () => {
  let t: TestServer;
  let acme: { id: string; apiKey: string };
  let other: { id: string; apiKey: string };
  let photo: Buffer;
  let first: any;
  let copy: any;

  before(async () => {
    t = await startTestServer({}, ['api', 'worker']);
    acme = await createCustomer(t.url, 'Acme');
    other = await createCustomer(t.url, 'Other');
    // A photograph stand-in with real structure (test/integration/phash-robustness.test.ts pins the
    // hash on more, bench/phash-robustness.ts on the real corpus).
    photo = await drawScene(11);
  });
  after(() => t.stop());

  it('says a resized, recompressed copy is a near-duplicate of the first, and similar finds it', async () => {
    first = await landed(t, acme.apiKey, photo);
    assert.equal(first.duplicateOf, null);
    assert.equal(first.nearDuplicates, 0);
    assert.equal(first.duplicateFlagged, false);

    const { width } = await sharp(photo).metadata();
    const smaller = await sharp(photo)
      .resize(Math.round(width! / 2))
      .jpeg({ quality: 60 })
      .toBuffer();
    copy = await landed(t, acme.apiKey, smaller);
    assert.equal(copy.duplicateOf, null, 'other bytes: not an exact duplicate');
    assert.equal(copy.nearDuplicates, 1);
    assert.equal((await api(t.url, acme.apiKey, 'GET', `/v1/images/${first.id}`)).body.nearDuplicates, 1);

    const similar = await api(t.url, acme.apiKey, 'GET', `/v1/images/${copy.id}/similar`);
    assert.equal(similar.status, 200, JSON.stringify(similar.body));
    assert.equal(similar.body.maxDistance, DEFAULT_NEAR_DISTANCE);
    assert.deepEqual(similar.body.exact, []);
    assert.deepEqual(
      similar.body.near.map((n: any) => n.id),
      [first.id],
    );
    assert.ok(similar.body.near[0].distance <= DEFAULT_NEAR_DISTANCE);

    // A different picture is no near-duplicate of either.
    const different = await landed(
      t,
      acme.apiKey,
      await (await drawPhoto(1200, 900, 11)).rotate(90).jpeg().toBuffer(),
    );
    assert.equal(different.nearDuplicates, 0);
    const none = await api(t.url, acme.apiKey, 'GET', `/v1/images/${different.id}/similar`);
    assert.deepEqual([none.body.exact, none.body.near], [[], []]);
    // maxDistance narrows: at 0 bits only identical hashes are near.
    const tight = await api(t.url, acme.apiKey, 'GET', `/v1/images/${copy.id}/similar?maxDistance=0`);
    assert.equal(tight.body.maxDistance, 0);
    assert.ok(tight.body.near.every((n: any) => n.distance === 0));
  });

  it('records an exact re-upload under accept, keeps exact and near apart, and never across customers', async () => {
    const again = await landed(t, acme.apiKey, photo);
    assert.equal(again.duplicateOf, first.id);
    assert.equal(again.duplicateFlagged, false);
    const similar = await api(t.url, acme.apiKey, 'GET', `/v1/images/${first.id}/similar`);
    assert.deepEqual(
      similar.body.exact.map((e: any) => e.id),
      [again.id],
    );
    assert.deepEqual(
      similar.body.near.map((n: any) => n.id),
      [copy.id],
    );

    // Another customer's same bytes are its own first image, and its searches see only its own.
    const theirs = await landed(t, other.apiKey, photo);
    assert.equal(theirs.duplicateOf, null);
    assert.equal(theirs.nearDuplicates, 0);
    const theirSimilar = await api(t.url, other.apiKey, 'GET', `/v1/images/${theirs.id}/similar`);
    assert.deepEqual([theirSimilar.body.exact, theirSimilar.body.near], [[], []]);
    const notTheirs = await api(t.url, other.apiKey, 'GET', `/v1/images/${first.id}/similar`);
    assert.equal(notTheirs.status, 404);
    assert.equal((await searchBy(t.url, other.apiKey, photo)).body.exact.length, 1, 'only its own copy');
  });

  it('indexes a flat image by its bytes only: a re-upload is its exact duplicate, another flat image is not near it', async () => {
    const plain = await createCustomer(t.url, 'Plain');
    const grey = (size: number) =>
      sharp({ create: { width: size, height: size, channels: 3, background: '#777' } })
        .png()
        .toBuffer();
    const small = await landed(t, plain.apiKey, await grey(64));
    const large = await landed(t, plain.apiKey, await grey(96));
    // Same picture, other bytes: a flat image's hash is noise, so no near match is ever made of it.
    assert.equal(large.duplicateOf, null);
    const again = await landed(t, plain.apiKey, await grey(64));
    assert.equal(again.duplicateOf, small.id);
    const similar = await api(t.url, plain.apiKey, 'GET', `/v1/images/${small.id}/similar`);
    assert.deepEqual([similar.body.exact.map((e: any) => e.id), similar.body.near], [[again.id], []]);
  });

  it('rejects an exact re-upload with 409 DUPLICATE_IMAGE naming the image, once even when sent at once', async () => {
    const patched = await api(t.url, ADMIN, 'PATCH', `/v1/customers/${acme.id}`, { duplicates: 'reject' });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.equal(patched.body.duplicates, 'reject');
    assert.equal((await api(t.url, ADMIN, 'GET', `/v1/customers/${acme.id}`)).body.duplicates, 'reject');
    const invalid = await api(t.url, ADMIN, 'PATCH', `/v1/customers/${acme.id}`, { duplicates: 'drop' });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.error.code, 'VALIDATION_FAILED');

    const before = await imageCount(t, acme.apiKey);
    const refused = await upload(t.url, acme.apiKey, photo);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'DUPLICATE_IMAGE');
    assert.match(refused.body.error.message, new RegExp(first.id));
    assert.equal(await imageCount(t, acme.apiKey), before, 'nothing was stored');

    // Four uploads of new bytes at once: the lock on the customer's checksum lets exactly one land.
    // (Upside down: drawn photos share one layout, so the same way up they would be near-duplicates.)
    const fresh = await (await drawPhoto(800, 600, 21)).flip().png().toBuffer();
    const answers = await Promise.all(Array.from({ length: 4 }, () => upload(t.url, acme.apiKey, fresh)));
    assert.deepEqual(answers.map((a) => a.status).sort(), [202, 409, 409, 409]);
    // Other customers' policies are their own.
    assert.equal((await upload(t.url, other.apiKey, photo)).status, 202);
  });

  it('flags an exact re-upload under flag (set with the CLI)', async () => {
    const set = await cli(['customers', 'duplicates', acme.id, 'flag', '--url', t.url, '--token', ADMIN]);
    assert.equal(set.code, 0, set.out);
    assert.match(set.out, /duplicates flag/);
    const shown = await cli(['customers', 'duplicates', acme.id, '--url', t.url, '--token', ADMIN]);
    assert.match(shown.out, /duplicates flag/);
    const wrong = await cli(['customers', 'duplicates', acme.id, 'drop', '--url', t.url, '--token', ADMIN]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.out, /accept\|flag\|reject/);
    const flagged = await landed(t, acme.apiKey, photo);
    assert.equal(flagged.duplicateFlagged, true);
    assert.equal(flagged.duplicateOf, first.id);
    const near = await landed(t, acme.apiKey, await sharp(photo).webp({ quality: 70 }).toBuffer());
    assert.equal(near.duplicateFlagged, true, 'a near duplicate is flagged once processed');
    await api(t.url, ADMIN, 'PATCH', `/v1/customers/${acme.id}`, { duplicates: 'accept' });
  });

  it('searches by image without storing anything, and refuses what is no image', async () => {
    const before = await imageCount(t, acme.apiKey);
    const found = await searchBy(t.url, acme.apiKey, await sharp(photo).resize(900).webp().toBuffer());
    assert.equal(found.status, 200, JSON.stringify(found.body));
    assert.match(found.body.phash, /^[0-9a-f]{16}$/);
    assert.deepEqual(found.body.exact, []);
    assert.ok(found.body.near.some((n: any) => n.id === first.id));
    const same = await searchBy(t.url, acme.apiKey, photo);
    assert.ok(same.body.exact.some((e: any) => e.id === first.id));
    assert.equal(await imageCount(t, acme.apiKey), before);

    assert.equal(
      (await searchBy(t.url, acme.apiKey, Buffer.from('not an image at all'))).body.error.code,
      'UNSUPPORTED_FORMAT',
    );
    assert.equal((await searchBy(t.url, acme.apiKey, Buffer.alloc(0))).status, 400);
    const truncated = await searchBy(t.url, acme.apiKey, photo.subarray(0, 2000));
    assert.equal(truncated.status, 422);
    assert.equal(truncated.body.error.code, 'CORRUPT_IMAGE');
    const asAdmin = await searchBy(t.url, ADMIN, photo);
    assert.equal(asAdmin.status, 400, 'an admin names the customer');
    assert.ok((await searchBy(t.url, ADMIN, photo, `?customerId=${acme.id}`)).body.exact.length > 0);
  });

  it("spends the customer's upload rate limit on searches by image", async () => {
    const limited = await createCustomer(t.url, 'Limited');
    await api(t.url, ADMIN, 'PATCH', `/v1/customers/${limited.id}`, { limits: { uploadsPerSecond: 0.001 } });
    assert.equal((await searchBy(t.url, limited.apiKey, photo)).status, 200);
    const refused = await searchBy(t.url, limited.apiKey, photo);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, 'RATE_LIMITED');
    assert.equal(
      (await searchBy(t.url, acme.apiKey, photo)).status,
      200,
      'another customer is not held back',
    );
  });

  it('groups duplicates by day, exact and near apart, and counts them in the daily rollup', async () => {
    const groups = await api(t.url, acme.apiKey, 'GET', '/v1/duplicates');
    assert.equal(groups.status, 200, JSON.stringify(groups.body));
    const exact = groups.body.exact.find((g: any) => g.images.some((i: any) => i.id === first.id));
    assert.ok(exact, JSON.stringify(groups.body));
    assert.ok(exact.images.length >= 3, 'the first, the accepted and the flagged copy');
    assert.equal(exact.images[0].id, first.id, 'oldest first');
    const near = groups.body.near.find((g: any) => g.images.some((i: any) => i.id === copy.id));
    assert.ok(near, JSON.stringify(groups.body));
    const member = near.images.find((i: any) => i.id === copy.id);
    assert.equal(member.nearOf, first.id);
    assert.ok(member.distance <= DEFAULT_NEAR_DISTANCE);
    assert.equal(
      (await api(t.url, ADMIN, 'GET', '/v1/duplicates')).status,
      400,
      'an admin names the customer',
    );

    const { rows } = await sql<{ exact: string; near: string }>`
      select sum(exact_duplicates)::int as exact, sum(near_duplicates)::int as near
      from analytics.rollup_daily_customers where customer_id = ${acme.id}`.execute(t.server.db);
    assert.deepEqual(rows[0], { exact: 2, near: 2 });
  });

  it('erases the index row with its image (ledger kind hash), and the audit finds one left behind', async () => {
    const erased = await api(t.url, acme.apiKey, 'DELETE', `/v1/images/${copy.id}`);
    assert.equal(erased.status, 200);
    assert.equal(erased.body.deleted.hash.count, 1);
    const similar = await api(t.url, acme.apiKey, 'GET', `/v1/images/${first.id}/similar`);
    assert.ok(!similar.body.near.some((n: any) => n.id === copy.id));

    // A row the index kept of an image that is gone is a finding, and the next purge deletes it.
    await sql`insert into image_hashes (image_id, customer_id, sha256, phash, b0, b1, b2, b3, landed_at)
              values (gen_random_uuid(), ${acme.id}, 'x', 0, 0, 0, 0, 0, now())`.execute(t.server.db);
    const { audit } = await import('../../src/retention/audit.ts');
    const report = await audit({
      db: t.server.db,
      lake: t.server.lake,
      clock: { now: () => new Date() },
      retentionMs: 7 * 86_400_000,
      statsRetentionMs: 400 * 86_400_000,
    });
    assert.deepEqual(
      report.findings.map((f) => f.kind),
      ['orphan-hash'],
    );
    const purge = await api(t.url, ADMIN, 'POST', '/v1/purges');
    assert.equal(purge.status, 200, JSON.stringify(purge.body));
    assert.equal(purge.body.deleted.hash.count, 1);
  });
});
