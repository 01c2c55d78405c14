import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, DAY, startTestServer, type TestServer, upload } from './harness.ts';

let t: TestServer;

before(async () => {
  t = await startTestServer({ IMAGELAKE_RETENTION: '7d' }, ['api']);
});
after(() => t.stop());

describe('expiresAt', () => {
  it("follows the customer's window in the list as in the image", async () => {
    const standard = await createCustomer(t.url, 'Standard window');
    const short = await createCustomer(t.url, 'Two-day window');
    const set = await api(t.url, ADMIN, 'PATCH', `/v1/customers/${short.id}`, { retention: '2d' });
    assert.equal(set.status, 200);
    const a = await upload(t.url, standard.apiKey, await jpeg({ seed: 11 }));
    const b = await upload(t.url, short.apiKey, await jpeg({ seed: 12 }));
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);

    const one = await api(t.url, short.apiKey, 'GET', `/v1/images/${b.body.id}`);
    assert.equal(Date.parse(one.body.expiresAt) - Date.parse(one.body.receivedAt), 2 * DAY);
    const own = await api(t.url, short.apiKey, 'GET', '/v1/images');
    const listed = own.body.images.find((i: { id: string }) => i.id === b.body.id);
    assert.equal(listed.expiresAt, one.body.expiresAt, 'the list says what the image says');
    assert.equal(Date.parse(listed.expiresAt) - Date.parse(listed.receivedAt), 2 * DAY);

    // An admin's list mixes customers: each image keeps its own customer's window.
    const all = await api(t.url, ADMIN, 'GET', '/v1/images?limit=500');
    const windows = new Map(
      all.body.images.map((i: { id: string; expiresAt: string; receivedAt: string }) => [
        i.id,
        Date.parse(i.expiresAt) - Date.parse(i.receivedAt),
      ]),
    );
    assert.equal(windows.get(b.body.id), 2 * DAY);
    assert.equal(windows.get(a.body.id), 7 * DAY);
  });
});
