import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { openBrowser } from './browser.ts';
import { ADMIN, api, createCustomer, startTestServer, type TestServer, until } from './harness.ts';
import { Receiver } from './webhook-receiver.ts';

// The dashboard's Webhooks panel: delivery success per customer, from real deliveries to local
// receivers. Acme's endpoint takes its three test events; Globex's answers 410, so its one fails.
let t: TestServer;
let browser: Browser;
let page: Page;
let analystKey: string;
let pageErrors: Error[] = [];
const receivers: Receiver[] = [];
const customers = new Map<string, { id: string; apiKey: string }>();

async function hookFor(name: string, answer: Receiver['answer'], tests: number): Promise<string> {
  const receiver = await new Receiver().start();
  receiver.answer = answer;
  receivers.push(receiver);
  const customer = await createCustomer(t.url, name);
  customers.set(name, customer);
  const hook = await api(t.url, customer.apiKey, 'POST', '/v1/webhooks', {
    url: receiver.url,
    events: ['image.processed'],
  });
  assert.equal(hook.status, 201, JSON.stringify(hook.body));
  for (let i = 0; i < tests; i++)
    assert.equal(
      (await api(t.url, customer.apiKey, 'POST', `/v1/webhooks/${hook.body.id}/test`)).status,
      202,
    );
  return hook.body.id;
}

before(
  async () => {
    t = await startTestServer(
      { IMAGELAKE_WEBHOOK_ALLOW_HTTP: 'true', IMAGELAKE_WEBHOOK_ALLOW_PRIVATE: 'true' },
      ['api', 'webhooks'],
    );
    const acme = await hookFor('Acme', (_, response) => response.end(), 3);
    const globex = await hookFor('Globex', (_, response) => response.writeHead(410).end(), 1);
    for (const [name, id, status] of [
      ['Acme', acme, 'delivered'],
      ['Globex', globex, 'failed'],
    ] as const) {
      const key = customers.get(name)!.apiKey;
      await until(`${name}'s deliveries ${status}`, async () => {
        const { body } = await api(t.url, key, 'GET', `/v1/webhooks/${id}/deliveries`);
        return (
          body.deliveries.length > 0 && body.deliveries.every((d: { status: string }) => d.status === status)
        );
      });
    }
    analystKey = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'dashboard' })).body.apiKey;
    ({ browser, page, pageErrors } = await openBrowser({ width: 1440, height: 1000 }));
  },
  { timeout: 120_000 },
);

after(async () => {
  await browser?.close();
  for (const r of receivers) await r.stop();
  await t?.stop();
});

const rows = (testId: string) =>
  page
    .locator(`[data-testid="${testId}"] tbody tr`)
    .evaluateAll((trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? '')),
    );

describe('dashboard: webhooks', () => {
  it('answers delivery outcomes per customer to analysts and admins, not to customers', async () => {
    const { status, body } = await api(t.url, analystKey, 'GET', '/v1/analytics/webhooks');
    assert.equal(status, 200);
    const byId = new Map(body.customers.map((c: { customerId: string }) => [c.customerId, c]));
    assert.deepEqual(byId.get(customers.get('Acme')!.id), {
      customerId: customers.get('Acme')!.id,
      delivered: 3,
      failed: 0,
      pending: 0,
    });
    assert.deepEqual(byId.get(customers.get('Globex')!.id), {
      customerId: customers.get('Globex')!.id,
      delivered: 0,
      failed: 1,
      pending: 0,
    });
    const one = await api(
      t.url,
      ADMIN,
      'GET',
      `/v1/analytics/webhooks?customerId=${customers.get('Globex')!.id}`,
    );
    assert.equal(one.body.customers.length, 1);
    const refused = await api(t.url, customers.get('Acme')!.apiKey, 'GET', '/v1/analytics/webhooks');
    assert.equal(refused.status, 403);
  });

  it('draws and tables delivery success per customer', async () => {
    await page.goto(`${t.url}/dashboard`);
    await page.getByTestId('key-input').fill(analystKey);
    await page.getByTestId('key-submit').click();
    await page.getByTestId('panel-webhooks').and(page.locator('[data-state="ready"]')).waitFor();
    assert.deepEqual((await rows('table-webhooks')).sort(), [
      ['Acme', '3', '0', '0', '100%'],
      ['Globex', '0', '1', '0', '0%'],
    ]);
    assert.ok(await page.getByTestId('chart-webhooks').locator('canvas').isVisible());
    assert.ok(await page.getByTestId('empty-webhooks').isHidden());
    assert.deepEqual(pageErrors, []);
  });
});
