import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { type Fact, recordFact } from '../../src/analytics/facts.ts';
import { openBrowser } from './browser.ts';
import { ADMIN, api, createCustomer, factFor, startTestServer, type TestServer } from './harness.ts';

// The dashboard's "Processor fields" panel, on facts written with recordFact (as the worker writes
// them for processed images): the field list, the value and histogram charts, and the filters.
const ACCENT = [0x2f, 0x6f, 0xed] as const; // PALETTE[0], the bars' colour

const DAY_MS = 86_400_000;
const today = new Date().toISOString().slice(0, 10);
const yesterday = new Date(Date.now() - DAY_MS).toISOString().slice(0, 10);
// Acme: exposure and sharpness on both days. Globex: exposure only, today.
const EXPOSURE: Array<[string, string, string, number]> = [
  ['Acme', today, 'dark', 4],
  ['Acme', today, 'normal', 3],
  ['Acme', yesterday, 'dark', 2],
  ['Acme', yesterday, 'bright', 1],
  ['Globex', today, 'normal', 2],
  ['Globex', today, 'overexposed', 1],
];
const ACME = 4 + 3 + 2 + 1;
const ALL = ACME + 2 + 1;
const sharpness = (i: number) => 10 + i * 7.25;

let t: TestServer;
let browser: Browser;
let page: Page;
let analystKey: string;
let pageErrors: Error[] = [];
const customers = new Map<string, { id: string; apiKey: string }>();

before(
  async () => {
    t = await startTestServer({}, ['api']);
    for (const name of ['Acme', 'Globex']) customers.set(name, await createCustomer(t.url, name));
    analystKey = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'dashboard' })).body.apiKey;
    let i = 0;
    for (const [customer, day, exposure, n] of EXPOSURE) {
      for (let k = 0; k < n; k++, i++) {
        const dimensions: Fact['dimensions'] = { 'quality.exposure': exposure };
        if (customer === 'Acme') dimensions['quality.sharpness'] = sharpness(i);
        const at = new Date(`${day}T00:30:00Z`);
        await recordFact(
          t.server.db,
          factFor(customers.get(customer)!.id, at, {
            bytes: 2000,
            width: 64,
            height: 48,
            processingMs: 20,
            dimensions,
            // Acme's first two images: quality timed out on them.
            processorRuns: {
              quality:
                customer === 'Acme' && i < 2
                  ? { version: '1.0.0', ms: 30_000, error: 'PROCESSOR_TIMEOUT' }
                  : { version: i % 2 ? '1.1.0' : '1.0.0', ms: 40 },
            },
          }),
        );
      }
    }

    ({ browser, page, pageErrors } = await openBrowser({ width: 1440, height: 1400 }));
  },
  { timeout: 300_000 },
);

after(async () => {
  await browser?.close();
  await t?.stop();
});

/** Waits until the panel has drawn this dimension for exactly these filters. */
async function drawn(dimension: string, filters: Record<string, string> = {}): Promise<void> {
  await page.waitForFunction(
    ([dimension, want]) => {
      const panel = document.querySelector<HTMLElement>('[data-testid="panel-dimensions"]');
      if (panel?.dataset.state !== 'ready' || panel.dataset.dimension !== dimension) return false;
      const { from: _f, to: _t, ...got } = Object.fromEntries(new URLSearchParams(panel.dataset.query ?? ''));
      return JSON.stringify(Object.entries(got).sort()) === JSON.stringify(Object.entries(want).sort());
    },
    [dimension, filters] as const,
  );
}

/** The series ECharts was given for a chart: name and data. */
function series(id: string): Promise<Array<{ name: string; data: number[] }>> {
  return page.evaluate((id) => {
    const el = document.querySelector(`[data-testid="chart-${id}"]`) as HTMLElement;
    const option = (window as any).echarts.getInstanceByDom(el).getOption();
    return option.series.map((s: { name: string; data: Array<number | { value: number } | null> }) => ({
      name: s.name,
      data: s.data.map((d) => (d !== null && typeof d === 'object' ? d.value : d)),
    }));
  }, id);
}

function categories(id: string, axis: 'xAxis' | 'yAxis'): Promise<string[]> {
  return page.evaluate(
    ([id, axis]) => {
      const el = document.querySelector(`[data-testid="chart-${id}"]`) as HTMLElement;
      return (window as any).echarts.getInstanceByDom(el).getOption()[axis][0].data;
    },
    [id, axis] as const,
  );
}

/** Pixels of the bar colour on the chart's canvas: what was actually painted, not just configured. */
async function painted(id: string): Promise<number> {
  const handle = await page.waitForFunction(
    ([id, [r, g, b]]) => {
      const canvas = document.querySelector(`[data-testid="chart-${id}"] canvas`) as HTMLCanvasElement | null;
      if (!canvas) return false;
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4)
        if (Math.abs(data[i]! - r) < 8 && Math.abs(data[i + 1]! - g) < 8 && Math.abs(data[i + 2]! - b) < 8)
          n++;
      return n > 500 ? n : false;
    },
    [id, ACCENT] as const,
  );
  return (await handle.jsonValue()) as number;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + (b ?? 0), 0);
const tableRows = (testId: string) =>
  page
    .locator(`[data-testid="${testId}"] tbody tr`)
    .evaluateAll((trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? '')),
    );

describe('dashboard: processor fields', () => {
  it('lists the fields of the range and draws the first one, a string, by value', async () => {
    await page.goto(`${t.url}/dashboard`);
    await page.getByTestId('key-input').fill(analystKey);
    await page.getByTestId('key-submit').click();
    await drawn('quality.exposure');

    const options = await page
      .getByTestId('dimension-select')
      .locator('option')
      .evaluateAll((os) => os.map((o) => [(o as HTMLOptionElement).value, o.textContent]));
    assert.deepEqual(options, [
      ['quality.exposure', 'quality.exposure · string'],
      ['quality.sharpness', 'quality.sharpness · number'],
    ]);
    assert.equal(await page.getByTestId('dimension-select').inputValue(), 'quality.exposure');

    assert.deepEqual(await tableRows('table-dimension'), [
      ['dark', '6', `${((100 * 6) / ALL).toFixed(1)}%`],
      ['normal', '5', `${((100 * 5) / ALL).toFixed(1)}%`],
      ['bright', '1', `${((100 * 1) / ALL).toFixed(1)}%`],
      ['overexposed', '1', `${((100 * 1) / ALL).toFixed(1)}%`],
    ]);
    // Most common on top: the category axis runs bottom-up.
    assert.deepEqual(await categories('dimension', 'yAxis'), ['overexposed', 'bright', 'normal', 'dark']);
    const [bars] = await series('dimension');
    assert.deepEqual(bars!.data, [1, 1, 5, 6]);
    assert.ok((await painted('dimension')) > 500, 'the value bars are on the canvas');

    const overTime = await series('dimension-time');
    assert.deepEqual(
      overTime.map((s) => s.name),
      ['dark', 'normal', 'bright', 'overexposed'],
    );
    assert.equal(sum(overTime.flatMap((s) => s.data)), ALL);
    const days = await categories('dimension-time', 'xAxis');
    assert.equal(days.at(-1), today);
    const dark = overTime.find((s) => s.name === 'dark')!.data;
    assert.deepEqual([dark.at(-2), dark.at(-1)], [2, 4], 'dark: two yesterday, four today');
    assert.ok(await page.getByTestId('empty-dimension').isHidden());
  });

  it('draws a number as a histogram with its statistics and daily mean', async () => {
    await page.getByTestId('dimension-select').selectOption('quality.sharpness');
    await drawn('quality.sharpness');
    const [histogram] = await series('dimension');
    assert.equal(histogram!.data.length, 20);
    assert.equal(sum(histogram!.data), ACME, 'every image in one bucket');
    assert.equal(histogram!.data[0], 1);
    assert.equal(histogram!.data.at(-1), 1);
    assert.ok((await painted('dimension')) > 500, 'the histogram is on the canvas');
    const values = Array.from({ length: ACME }, (_, i) => sharpness(i));
    assert.equal(
      await page.locator('[data-testid="dimension-stats"] [data-stat="min"]').getAttribute('title'),
      String(values[0]),
    );
    assert.equal(
      await page.locator('[data-testid="dimension-stats"] [data-stat="max"]').getAttribute('title'),
      String(values.at(-1)),
    );
    const [images, mean] = await series('dimension-time');
    assert.equal(images!.name, 'images');
    assert.equal(sum(images!.data), ACME);
    assert.equal(mean!.name, 'mean');
    assert.deepEqual(mean!.data.slice(-2), [
      (sharpness(7) + sharpness(8) + sharpness(9)) / 3,
      (sharpness(0) +
        sharpness(1) +
        sharpness(2) +
        sharpness(3) +
        sharpness(4) +
        sharpness(5) +
        sharpness(6)) /
        7,
    ]);
    assert.equal((await tableRows('table-dimension')).length, 20);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByTestId('csv-dimension').click(),
    ]);
    assert.match(download.suggestedFilename(), /^imagelake-quality\.sharpness-.*\.csv$/);
    const csv = (await readFile((await download.path())!, 'utf8')).trimEnd().split('\n');
    assert.equal(csv[0], 'from,to,images');
    assert.equal(sum(csv.slice(1).map((line) => Number(line.split(',')[2]))), ACME);
  });

  it("follows the customer filter: the list and the chart are that customer's", async () => {
    const globex = customers.get('Globex')!;
    await page.getByTestId('filter-customer').selectOption({ label: 'Globex' });
    // Globex has no sharpness: the panel falls back to the first field it has.
    await drawn('quality.exposure', { customerId: globex.id });
    const options = await page
      .getByTestId('dimension-select')
      .locator('option')
      .evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    assert.deepEqual(options, ['quality.exposure']);
    assert.deepEqual(await tableRows('table-dimension'), [
      ['normal', '2', `${((100 * 2) / 3).toFixed(1)}%`],
      ['overexposed', '1', `${((100 * 1) / 3).toFixed(1)}%`],
    ]);
    const [bars] = await series('dimension');
    assert.deepEqual(bars!.data, [1, 2]);

    await page.getByTestId('filter-format').selectOption('jpeg');
    await drawn('quality.exposure', { customerId: globex.id, format: 'jpeg' });
    await page.getByTestId('filter-customer').selectOption('');
    await page.getByTestId('filter-format').selectOption('');
    await drawn('quality.exposure');
    assert.equal(sum((await series('dimension'))[0]!.data), ALL);
  });

  it('says so when the range has no processor fields', async () => {
    await page.getByTestId('filter-from').fill('2001-01-01');
    await page.getByTestId('filter-to').fill('2001-01-31');
    await page.waitForFunction(
      () =>
        document.querySelector<HTMLElement>('[data-testid="panel-dimensions"]')?.dataset.state === 'empty',
    );
    assert.ok(await page.getByTestId('dimension-select').isDisabled());
    assert.ok(await page.getByTestId('empty-dimension').isVisible());
    assert.equal(await page.getByTestId('empty-dimension').innerText(), 'No processor fields in this range');
    assert.deepEqual(await tableRows('table-dimension'), []);

    await page.getByTestId('range-30').click();
    await drawn('quality.exposure');
    await page.screenshot({ path: '/tmp/dashboard-dimensions.png', fullPage: true });
  });

  it('the processors panel counts runs, failures by code and versions, per customer too', async () => {
    const ready = (query: string) =>
      page.waitForFunction((query) => {
        const panel = document.querySelector<HTMLElement>('[data-testid="panel-processors"]');
        const {
          from: _f,
          to: _t,
          ...got
        } = Object.fromEntries(new URLSearchParams(panel?.dataset.query ?? ''));
        return panel?.dataset.state === 'ready' && new URLSearchParams(got).toString() === query;
      }, query);
    await ready('');
    const [row] = await tableRows('table-processors');
    // Processor, runs, failed, failure rate, skipped, p50, p90, top error, versions.
    assert.deepEqual(
      [row![0], row![1], row![2], row![3], row![7]],
      ['quality', String(ALL), '2', '15.4%', 'PROCESSOR_TIMEOUT (2)'],
    );
    assert.equal(row![8], '1.0.0, 1.1.0');
    const drawnSeries = await series('processors');
    assert.deepEqual(
      drawnSeries.map((x) => [x.name, x.data]),
      [
        ['ok', [ALL - 2]],
        ['PROCESSOR_TIMEOUT', [2]],
      ],
    );

    await page.getByTestId('filter-customer').selectOption({ label: 'Globex' });
    await ready(`customerId=${customers.get('Globex')!.id}`);
    const [globex] = await tableRows('table-processors');
    assert.deepEqual([globex![1], globex![2], globex![7]], ['3', '0', '']);
    await page.getByTestId('filter-customer').selectOption('');
    await ready('');
  });

  it('threw no uncaught error in the page', () => {
    assert.deepEqual(
      pageErrors.map((e) => e.message),
      [],
    );
  });
});
