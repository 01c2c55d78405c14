import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { drawPhoto } from '../fixtures/images.ts';
import { openBrowser } from './browser.ts';
import { ADMIN, api, createCustomer, settled, startTestServer, type TestServer, upload } from './harness.ts';

const CHARTS = ['over-time', 'top-customers', 'by-source', 'failures', 'latency', 'bytes-over-time'];

type Format = 'jpeg' | 'png' | 'webp';
// Every customer and every format gets a different count, so a number in the wrong row or a
// filter that does nothing cannot go unnoticed. Initech also sends one corrupt JPEG.
const PLAN: Record<string, Partial<Record<Format, number>>> = {
  Acme: { jpeg: 3, png: 1, webp: 2 },
  Globex: { jpeg: 1, png: 2, webp: 1 },
  Initech: { jpeg: 1, png: 1 },
};
const CORRUPT_JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(900, 3)]);

let t: TestServer;
let browser: Browser;
let page: Page;
let analystKey: string;
let today: string;
let pageErrors: Error[] = [];
const customers = new Map<string, { id: string; apiKey: string; bytes: number }>();

before(
  async () => {
    t = await startTestServer();
    today = new Date().toISOString().slice(0, 10);
    let seed = 0;
    for (const [name, formats] of Object.entries(PLAN)) {
      const customer = { ...(await createCustomer(t.url, name)), bytes: 0 };
      customers.set(name, customer);
      const files: Buffer[] = [];
      for (const [format, n] of Object.entries(formats) as Array<[Format, number]>) {
        // A new seed per picture: identical bytes would be the same image to the lake.
        for (let i = 0; i < n; i++) files.push(await (await drawPhoto(64, 48, seed++))[format]().toBuffer());
      }
      if (name === 'Initech') files.push(CORRUPT_JPEG);
      for (const file of files) {
        const { status, body } = await upload(t.url, customer.apiKey, file);
        assert.equal(status, 202, JSON.stringify(body));
        await settled(t.url, customer.apiKey, body.id);
        customer.bytes += file.length;
      }
    }
    analystKey = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'dashboard' })).body.apiKey;
    assert.match(analystKey, /^il_analyst_/);

    ({ browser, page, pageErrors } = await openBrowser({ width: 1440, height: 1000 }));
  },
  { timeout: 300_000 },
);

after(async () => {
  await browser?.close();
  await t?.stop();
});

/** What a reader sees in each cell, or with `attribute` = 'data-value' the raw value the CSV carries. */
function rows(testId: string, attribute?: string): Promise<string[][]> {
  return page
    .locator(`[data-testid="${testId}"] tbody tr`)
    .evaluateAll(
      (trs, attr) =>
        trs.map((tr) =>
          Array.from(
            tr.querySelectorAll('td'),
            (td) => (attr ? td.getAttribute(attr) : td.textContent) ?? '',
          ),
        ),
      attribute,
    );
}

const text = (testId: string) => page.getByTestId(testId).innerText();

/**
 * A filter change refetches in the background; reading the page before the summary for exactly
 * these filters (and range) is drawn would read the previous one.
 */
async function drawn(filters: Record<string, string>, range?: { from: string; to: string }): Promise<void> {
  await page.waitForFunction(
    ([want, range]) => {
      const view = document.querySelector<HTMLElement>('[data-testid="dashboard"]');
      if (view?.dataset.state !== 'ready') return false;
      const { from, to, ...got } = Object.fromEntries(new URLSearchParams(view.dataset.query ?? ''));
      if (range && (from !== range.from || to !== range.to)) return false;
      return JSON.stringify(Object.entries(got).sort()) === JSON.stringify(Object.entries(want).sort());
    },
    [filters, range] as const,
  );
}

const daysBefore = (day: string, n: number) =>
  new Date(Date.parse(`${day}T00:00:00Z`) - n * 86_400_000).toISOString().slice(0, 10);
const total = (format: Format) => Object.values(PLAN).reduce((n, plan) => n + (plan[format] ?? 0), 0);
const imagesOf = (name: string) =>
  Object.values(PLAN[name]!).reduce((n, v) => n + v, 0) + (name === 'Initech' ? 1 : 0);
const ALL_IMAGES = Object.keys(PLAN).reduce((n, name) => n + imagesOf(name), 0);

describe('dashboard', () => {
  it('asks for a key and turns away an unknown one, or a customer key', async () => {
    await page.goto(`${t.url}/dashboard`);
    await page.getByTestId('key-input').fill('il_analyst_not-a-real-key');
    await page.getByTestId('key-submit').click();
    await page.getByTestId('login-error').waitFor();
    assert.match(await text('login-error'), /unknown or revoked/);
    assert.ok(await page.getByTestId('login-form').isVisible());
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    await page.getByTestId('key-input').fill(customers.get('Acme')!.apiKey);
    await page.getByTestId('key-submit').click();
    await page.getByTestId('login-error').filter({ hasText: 'analyst or admin' }).waitFor();
    assert.ok(await page.getByTestId('login-form').isVisible());
    assert.ok(await page.getByTestId('dashboard').isHidden());
  });

  it('shows the totals of every customer', async () => {
    await page.getByTestId('key-input').fill(analystKey);
    await page.getByTestId('key-submit').click();
    await drawn({});
    assert.equal(await text('total-images'), String(ALL_IMAGES));
    assert.equal(await text('total-processed'), String(ALL_IMAGES - 1));
    assert.equal(await text('total-failed'), '1');
    assert.equal(await text('total-failed-sub'), `${((100 * 1) / ALL_IMAGES).toFixed(1)}% failure rate`);
    assert.equal(await text('total-customers'), '3');
    const uploaded = [...customers.values()].reduce((n, c) => n + c.bytes, 0);
    assert.equal(await page.getByTestId('total-bytes').getAttribute('data-value'), String(uploaded));
    // Decimal units, as the CLI prints them: 1 kB = 1000 bytes.
    const kb = uploaded / 1000;
    const shown = new Intl.NumberFormat('en-US', { maximumFractionDigits: kb >= 100 ? 0 : 1 }).format(kb);
    assert.equal(await text('total-bytes'), `${shown} kB`);
    assert.match(await text('total-p50'), /^\d+ ms$/);
    assert.ok(await page.getByTestId('empty-state').isHidden());
    assert.equal(await page.getByTestId('filter-to').inputValue(), today);
  });

  it('tables images by day and format, customer, source and error code', async () => {
    assert.deepEqual(
      (await rows('table-over-time')).map((r) => r.slice(0, 3)),
      [
        [today, 'jpeg', String(total('jpeg') + 1)],
        [today, 'png', String(total('png'))],
        [today, 'webp', String(total('webp'))],
      ],
    );
    assert.deepEqual(
      (await rows('table-top-customers')).map(([name, images, , failed]) => [name, images, failed]),
      [
        ['Acme', String(imagesOf('Acme')), '0'],
        ['Globex', String(imagesOf('Globex')), '0'],
        ['Initech', String(imagesOf('Initech')), '1'],
      ],
    );
    assert.deepEqual(
      (await rows('table-top-customers', 'data-value')).map((r) => r[2]),
      ['Acme', 'Globex', 'Initech'].map((name) => String(customers.get(name)!.bytes)),
    );
    assert.deepEqual(
      (await rows('table-by-source')).map((r) => r.slice(0, 2)),
      [['http', String(ALL_IMAGES)]],
    );
    assert.deepEqual(await rows('table-failures'), [['CORRUPT_IMAGE', '1']]);
    assert.deepEqual(
      (await rows('table-latency')).map((r) => r[0]),
      [today],
    );
    assert.deepEqual(await rows('table-bytes-over-time', 'data-value'), [
      [today, String([...customers.values()].reduce((n, c) => n + c.bytes, 0))],
    ]);
  });

  it('draws every chart with ECharts, from the same numbers', async () => {
    for (const id of CHARTS) {
      const canvas = page.locator(`[data-testid="chart-${id}"] canvas`).first();
      const box = await canvas.boundingBox();
      assert.ok(box && box.width > 100 && box.height > 100, `${id} has a canvas: ${JSON.stringify(box)}`);
      assert.ok(await page.getByTestId(`empty-${id}`).isHidden(), `${id} is not empty`);
    }
    const series = await page.evaluate(() => {
      const el = document.querySelector('[data-testid="chart-over-time"]') as HTMLElement;
      const option = (window as any).echarts.getInstanceByDom(el).getOption();
      return option.series.map((s: { name: string; data: number[] }) => [
        s.name,
        s.data.reduce((a, b) => a + b, 0),
      ]);
    });
    assert.deepEqual(Object.fromEntries(series), {
      jpeg: total('jpeg') + 1,
      png: total('png'),
      webp: total('webp'),
    });
    await page.screenshot({ path: '/tmp/dashboard.png', fullPage: true });
  });

  it('downloads the over-time table as CSV, the same rows', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByTestId('csv-over-time').click(),
    ]);
    assert.match(download.suggestedFilename(), /^imagelake-over-time-.*\.csv$/);
    const csv = await readFile((await download.path())!, 'utf8');
    const lines = csv.trimEnd().split('\n');
    assert.equal(lines[0], 'day,format,images,bytes');
    assert.deepEqual(
      lines.slice(1).map((line) => line.split(',')),
      await rows('table-over-time', 'data-value'),
    );
    assert.deepEqual(
      lines.slice(1).map((line) => line.split(',').slice(1, 3)),
      [
        ['jpeg', String(total('jpeg') + 1)],
        ['png', String(total('png'))],
        ['webp', String(total('webp'))],
      ],
    );
  });

  it('narrows every chart and table to one customer, then one format', async () => {
    const globex = customers.get('Globex')!;
    await page.getByTestId('filter-customer').selectOption({ label: 'Globex' });
    await drawn({ customerId: globex.id });
    assert.equal(await text('total-images'), String(imagesOf('Globex')));
    assert.equal(await text('total-customers'), '1');
    assert.equal(await text('total-failed'), '0');
    assert.equal(await page.getByTestId('total-bytes').getAttribute('data-value'), String(globex.bytes));
    assert.deepEqual(
      (await rows('table-over-time')).map((r) => r.slice(0, 3)),
      [
        [today, 'jpeg', String(PLAN.Globex!.jpeg)],
        [today, 'png', String(PLAN.Globex!.png)],
        [today, 'webp', String(PLAN.Globex!.webp)],
      ],
    );
    assert.deepEqual(
      (await rows('table-top-customers')).map((r) => r.slice(0, 2)),
      [['Globex', String(imagesOf('Globex'))]],
    );
    assert.deepEqual(
      (await rows('table-by-source')).map((r) => r.slice(0, 2)),
      [['http', String(imagesOf('Globex'))]],
    );
    assert.deepEqual(await rows('table-failures'), []);
    assert.ok(await page.getByTestId('empty-failures').isVisible());
    assert.equal(await text('empty-failures'), 'No failures in this range');

    await page.getByTestId('filter-format').selectOption('png');
    await drawn({ customerId: globex.id, format: 'png' });
    assert.equal(await text('total-images'), String(PLAN.Globex!.png));
    assert.deepEqual(
      (await rows('table-over-time')).map((r) => r.slice(0, 3)),
      [[today, 'png', String(PLAN.Globex!.png)]],
    );

    await page.getByTestId('filter-customer').selectOption('');
    await page.getByTestId('filter-format').selectOption('');
    await drawn({});
    assert.equal(await text('total-images'), String(ALL_IMAGES));
  });

  it('tables usage per customer per day, narrowed by the customer filter', async () => {
    await page.getByTestId('panel-usage').and(page.locator('[data-state="ready"]')).waitFor();
    const usage = await rows('table-usage', 'data-value');
    const expected = (name: string) => {
      const images = imagesOf(name);
      const failed = name === 'Initech' ? 1 : 0;
      return [
        today,
        name,
        String(images),
        String(images - failed),
        String(failed),
        String(customers.get(name)!.bytes),
      ];
    };
    assert.deepEqual(
      usage.map((r) => r.slice(0, 6)).sort(),
      ['Acme', 'Globex', 'Initech'].map(expected).sort(),
    );
    const globex = customers.get('Globex')!;
    await page.getByTestId('filter-customer').selectOption({ label: 'Globex' });
    await drawn({ customerId: globex.id });
    await page.waitForFunction(
      (id) => document.querySelector<HTMLElement>('[data-testid="panel-usage"]')?.dataset.query?.includes(id),
      globex.id,
    );
    await page.getByTestId('panel-usage').and(page.locator('[data-state="ready"]')).waitFor();
    assert.deepEqual(
      (await rows('table-usage', 'data-value')).map((r) => r.slice(0, 6)),
      [expected('Globex')],
    );
    await page.getByTestId('filter-customer').selectOption('');
    await drawn({});
  });

  it('tables and draws duplicates per customer per day, as /v1/analytics/duplicates counts them', async () => {
    await page.getByTestId('panel-duplicates').and(page.locator('[data-state="ready"]')).waitFor();
    const answer = await api(t.url, analystKey, 'GET', `/v1/analytics/duplicates?from=${today}&to=${today}`);
    assert.equal(answer.status, 200);
    // The drawn photos share one layout (only their colours differ), so in grey most are near each other.
    assert.ok(
      answer.body.rows.some((r: any) => r.near > 0),
      JSON.stringify(answer.body),
    );
    const names = new Map([...customers].map(([name, c]) => [c.id, name]));
    assert.deepEqual(
      (await rows('table-duplicates', 'data-value')).sort(),
      answer.body.rows
        .map((r: any) => [r.day, names.get(r.customerId), String(r.images), String(r.exact), String(r.near)])
        .sort(),
    );
    const drawn = await page.evaluate(() => {
      const chart = (window as any).echarts.getInstanceByDom(
        document.querySelector('[data-testid="chart-duplicates"]'),
      );
      return chart
        .getOption()
        .series.map((s: any) => [s.name, s.data.reduce((a: number, b: number) => a + b, 0)]);
    });
    const sum = (key: 'exact' | 'near') => answer.body.rows.reduce((n: number, r: any) => n + r[key], 0);
    assert.deepEqual(drawn, [
      ['exact', sum('exact')],
      ['near', sum('near')],
    ]);
  });

  it('draws today by the hour, and an empty range as empty', async () => {
    await page.getByTestId('range-today').click();
    await drawn({}, { from: today, to: today });
    assert.equal(await page.getByTestId('table-over-time').locator('th').first().innerText(), 'hour (UTC)');
    assert.equal(await page.getByTestId('filter-from').inputValue(), today);
    assert.equal(await page.getByTestId('range-today').getAttribute('aria-pressed'), 'true');
    const hourly = await rows('table-over-time');
    for (const [hour] of hourly) assert.match(hour!, new RegExp(`^${today} \\d\\d:00$`));
    const byFormat: Record<string, number> = {};
    for (const [, format, images] of hourly) byFormat[format!] = (byFormat[format!] ?? 0) + Number(images);
    assert.deepEqual(byFormat, { jpeg: total('jpeg') + 1, png: total('png'), webp: total('webp') });

    await page.getByTestId('filter-from').fill('2001-01-01');
    await page.getByTestId('filter-to').fill('2001-01-31');
    await drawn({}, { from: '2001-01-01', to: '2001-01-31' });
    assert.equal(await text('total-images'), '0');
    assert.ok(await page.getByTestId('empty-state').isVisible());
    assert.equal(await text('empty-over-time'), 'No images in this range');
    assert.deepEqual(await rows('table-over-time'), []);

    await page.getByTestId('range-30').click();
    await drawn({}, { from: daysBefore(today, 29), to: today });
    assert.equal(await page.getByTestId('table-over-time').locator('th').first().innerText(), 'day');
    assert.equal(await text('total-images'), String(ALL_IMAGES));
  });

  it('runs SQL and shows the result, and refuses a write with its code', async () => {
    await page.getByTestId('tab-sql').click();
    const schema = page.getByTestId('schema-panel');
    await schema.locator('[data-table="rollup_daily"]').waitFor();
    assert.match(await schema.locator('[data-table="facts"]').innerText(), /image_id/);

    const editor = page.getByTestId('sql-editor');
    await editor.fill('select format, sum(images)::int as images\nfrom ');
    await schema.getByRole('button', { name: 'rollup_daily', exact: true }).click();
    assert.equal(await editor.inputValue(), 'select format, sum(images)::int as images\nfrom rollup_daily');
    await editor.press('End');
    await editor.pressSequentially(' group by 1 order by 1');
    await editor.press('Control+Enter');
    await page.getByTestId('sql-meta').filter({ hasText: /rows/ }).waitFor();
    assert.match(await text('sql-meta'), /^3 rows · \d+ ms$/);
    assert.deepEqual(await rows('sql-result'), [
      ['jpeg', String(total('jpeg') + 1)],
      ['png', String(total('png'))],
      ['webp', String(total('webp'))],
    ]);
    assert.ok(await page.getByTestId('sql-truncated').isHidden());

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByTestId('sql-csv').click(),
    ]);
    assert.equal(
      await readFile((await download.path())!, 'utf8'),
      `format,images\njpeg,${total('jpeg') + 1}\npng,${total('png')}\nwebp,${total('webp')}\n`,
    );
    await page.screenshot({ path: '/tmp/dashboard-sql.png', fullPage: true });

    await editor.fill('delete from facts');
    await page.getByTestId('sql-run').click();
    await page.getByTestId('sql-error').waitFor();
    assert.match(await text('sql-error'), /^SQL_WRITE_REFUSED/);
    assert.ok(await page.getByTestId('sql-result').isHidden());

    await editor.fill('select * from public.images');
    await page.getByTestId('sql-run').click();
    await page.getByTestId('sql-error').filter({ hasText: 'SQL_FORBIDDEN' }).waitFor();
    assert.ok(await page.getByTestId('tab-sql').isVisible(), 'a forbidden query keeps the analyst signed in');

    const count = await api(t.url, analystKey, 'POST', '/v1/sql', {
      query: 'select count(*)::int as n from facts',
    });
    assert.equal(count.body.rows[0].n, ALL_IMAGES, 'the refused delete deleted nothing');
  });

  it('shows operators the failures by code with an admin key; an analyst key does not get the panel', async () => {
    await page.getByTestId('tab-dashboard').click();
    await page
      .locator('[data-testid="panel-ops-failures"][data-state="forbidden"]')
      .waitFor({ state: 'attached' });
    assert.ok(await page.getByTestId('panel-ops-failures').isHidden());
    assert.ok(await page.getByTestId('tab-sql').isVisible(), 'the refusal keeps the analyst signed in');

    await page.getByTestId('sign-out').click();
    await page.getByTestId('key-input').fill(ADMIN);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="panel-ops-failures"][data-state="ready"]').waitFor();
    const [row, ...others] = await rows('table-ops-failures', 'data-value');
    assert.deepEqual(others, []);
    assert.deepEqual(row!.slice(0, 3), ['CORRUPT_IMAGE', '1', '0']);
    assert.match(row![3]!, /could not be decoded/);

    await page.getByTestId('filter-customer').selectOption({ label: 'Acme' });
    await page
      .locator(
        `[data-testid="panel-ops-failures"][data-state="empty"][data-query*="${customers.get('Acme')!.id}"]`,
      )
      .waitFor();
    assert.ok(await page.getByTestId('empty-ops-failures').isVisible());
    await page.getByTestId('filter-customer').selectOption('');
  });

  it('signs out', async () => {
    await page.getByTestId('sign-out').click();
    await page.getByTestId('login-form').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.reload();
    await page.getByTestId('login-form').waitFor();
    assert.ok(await page.getByTestId('tab-dashboard').isHidden());
  });

  it('threw no uncaught error in the page', () => {
    assert.deepEqual(
      pageErrors.map((e) => e.message),
      [],
    );
  });
});
