import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Fact, recordFact } from '../../src/analytics/facts.ts';
import { ADMIN, api, createCustomer, factFor, startTestServer, type TestServer } from './harness.ts';

// Facts are written with recordFact straight into the server's catalog, as the worker does when an
// image is processed, so every count below is known exactly. The expected answers are computed here
// from the same plan, independently of the SQL.
const D1 = '2025-06-01';
const D2 = '2025-06-02';
const D3 = '2025-06-03';

/** 60 label values: tag-00..tag-09 common (12 down to 3 images), 40 with 2 images, 10 with 1. */
const LABELS: string[] = [];
for (let k = 0; k < 60; k++) {
  const images = k < 10 ? 12 - k : k < 50 ? 2 : 1;
  for (let i = 0; i < images; i++) LABELS.push(`tag-${String(k).padStart(2, '0')}`);
}
const N = LABELS.length; // 75 + 80 + 10

interface Planned {
  customer: 'Alpha' | 'Beta';
  day: string;
  source: string;
  format: string;
  dims: Fact['dimensions'];
}
// Whole thousandths off the round numbers keep every value away from a histogram edge.
const sharpness = (i: number) => i * 1.5 + (i % 7) * 0.013;
const PLAN: Planned[] = LABELS.map((label, i) => ({
  customer: i % 5 === 0 ? 'Beta' : 'Alpha',
  day: i % 2 ? D2 : D1,
  source: i % 3 === 0 ? 'kafka' : 'http',
  format: i % 3 === 0 ? 'png' : 'jpeg',
  dims: {
    'tags.label': label,
    'quality.sharpness': sharpness(i),
    'faces.count': i % 4,
    'quality.ok': i % 3 !== 0,
  },
}));
// An older processor version wrote sharpness as a string; they are left out of the number's answer.
const STRAY = 2;
const LATE = 4;

let t: TestServer;
let analystKey: string;
const customers = new Map<string, { id: string; apiKey: string }>();

async function fact(customer: string, day: string, over: Partial<Fact>): Promise<void> {
  await recordFact(t.server.db, factFor(customers.get(customer)!.id, new Date(`${day}T10:00:00Z`), over));
}

before(
  async () => {
    t = await startTestServer({}, ['api']);
    for (const name of ['Alpha', 'Beta']) customers.set(name, await createCustomer(t.url, name));
    analystKey = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'dims' })).body.apiKey;
    for (const p of PLAN)
      await fact(p.customer, p.day, { source: p.source, format: p.format, dimensions: p.dims });
    for (let i = 0; i < STRAY; i++) await fact('Alpha', D1, { dimensions: { 'quality.sharpness': 'n/a' } });
    for (let i = 0; i < 3; i++)
      await fact('Alpha', D1, { outcome: 'failed', errorCode: 'CORRUPT_IMAGE', width: null, height: null });
    for (let i = 0; i < LATE; i++)
      await fact('Beta', D3, { dimensions: { 'late.only': 'x', 'tags.label': 'tag-late' } });
  },
  { timeout: 120_000 },
);

after(async () => {
  await t?.stop();
});

const get = (path: string, key = analystKey) => api(t.url, key, 'GET', path);
const q = (params: Record<string, string | number | undefined>) =>
  new URLSearchParams(
    Object.entries(params).filter((e): e is [string, string | number] => e[1] !== undefined) as Array<
      [string, string]
    >,
  ).toString();

type Filter = { customer?: 'Alpha' | 'Beta'; source?: string; format?: string };
const planned = (f: Filter = {}) =>
  PLAN.filter(
    (p) =>
      (!f.customer || p.customer === f.customer) &&
      (!f.source || p.source === f.source) &&
      (!f.format || p.format === f.format),
  );

/** Images by value, most first, ties by value: what the endpoint must rank. */
function ranked(rows: Planned[], key: string): Array<{ value: string | boolean; images: number }> {
  const counts = new Map<string | boolean, number>();
  for (const p of rows) counts.set(p.dims[key] as string, (counts.get(p.dims[key] as string) ?? 0) + 1);
  return [...counts]
    .map(([value, images]) => ({ value, images }))
    .sort((a, b) => b.images - a.images || String(a.value).localeCompare(String(b.value)));
}

/** percentile_cont: linear interpolation between the closest ranks. */
function percentile(sorted: number[], p: number): number {
  const at = p * (sorted.length - 1);
  const lo = Math.floor(at);
  return sorted[lo]! + (at - lo) * ((sorted[Math.min(lo + 1, sorted.length - 1)] ?? 0) - sorted[lo]!);
}

const close = (actual: number, expected: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} ≠ ${expected}`,
  );

describe('processor fields as analytics dimensions', () => {
  it('lists the dimensions of a range with their kind, images and distinct values', async () => {
    const { status, body } = await get(`/v1/analytics/dimensions?${q({ from: D1, to: D2 })}`);
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(body, {
      from: D1,
      to: D2,
      dimensions: [
        { name: 'faces.count', kind: 'number', images: N },
        { name: 'quality.ok', kind: 'boolean', images: N, values: 2 },
        { name: 'quality.sharpness', kind: 'number', images: N, otherKindImages: STRAY },
        { name: 'tags.label', kind: 'string', images: N, values: 60 },
      ],
    });

    const late = (await get(`/v1/analytics/dimensions?${q({ from: D3, to: D3 })}`)).body;
    assert.deepEqual(late.dimensions, [
      { name: 'late.only', kind: 'string', images: LATE, values: 1 },
      { name: 'tags.label', kind: 'string', images: LATE, values: 1 },
    ]);

    const beta = planned({ customer: 'Beta' });
    const one = (
      await get(`/v1/analytics/dimensions?${q({ from: D1, to: D3, customerId: customers.get('Beta')!.id })}`)
    ).body;
    assert.deepEqual(one.dimensions, [
      { name: 'faces.count', kind: 'number', images: beta.length },
      { name: 'late.only', kind: 'string', images: LATE, values: 1 },
      { name: 'quality.ok', kind: 'boolean', images: beta.length, values: 2 },
      { name: 'quality.sharpness', kind: 'number', images: beta.length },
      {
        name: 'tags.label',
        kind: 'string',
        images: beta.length + LATE,
        values: new Set(beta.map((p) => p.dims['tags.label'])).size + 1,
      },
    ]);

    const empty = await get(`/v1/analytics/dimensions?${q({ from: '2001-01-01', to: '2001-01-31' })}`);
    assert.deepEqual(empty.body, { from: '2001-01-01', to: '2001-01-31', dimensions: [] });
  });

  it('breaks a string down into the top 50 values and the rest, and by day for the top 10', async () => {
    const { status, body } = await get(`/v1/analytics/dimensions/tags.label?${q({ from: D1, to: D2 })}`);
    assert.equal(status, 200, JSON.stringify(body));
    const all = ranked(PLAN, 'tags.label');
    assert.equal(body.kind, 'string');
    assert.equal(body.images, N);
    assert.equal(body.otherKindImages, 0);
    assert.equal(body.values.length, 50);
    assert.deepEqual(body.values, all.slice(0, 50));
    assert.deepEqual(body.values[0], { value: 'tag-00', images: 12 });
    assert.deepEqual(body.other, { values: 10, images: 10 }, 'tag-50..tag-59, one image each');
    assert.equal(
      body.values.reduce((n: number, v: { images: number }) => n + v.images, 0) + body.other.images,
      N,
    );

    // Per day: the ten most common values by name, the rest as value null; every image once.
    const top10 = new Set(all.slice(0, 10).map((v) => v.value));
    const expected = new Map<string, number>();
    for (const p of PLAN) {
      const value = top10.has(p.dims['tags.label'] as string) ? p.dims['tags.label'] : null;
      const key = `${p.day}|${value}`;
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    const got = new Map<string, number>(
      body.overTime.map((r: { day: string; value: string | null; images: number }) => [
        `${r.day}|${r.value}`,
        r.images,
      ]),
    );
    assert.deepEqual(got, expected);
    assert.equal(body.overTime.length, expected.size);
    assert.equal(
      body.overTime.reduce((n: number, r: { images: number }) => n + r.images, 0),
      N,
    );
  });

  it('counts booleans as true and false', async () => {
    const { body } = await get(`/v1/analytics/dimensions/quality.ok?${q({ from: D1, to: D2 })}`);
    const yes = PLAN.filter((p) => p.dims['quality.ok'] === true).length;
    assert.equal(body.kind, 'boolean');
    assert.deepEqual(body.values, [
      { value: true, images: yes },
      { value: false, images: N - yes },
    ]);
    assert.deepEqual(body.other, { values: 0, images: 0 });
  });

  it('describes a number: min, max, mean, p50, p90 and a histogram of its images', async () => {
    const { status, body } = await get(
      `/v1/analytics/dimensions/quality.sharpness?${q({ from: D1, to: D2 })}`,
    );
    assert.equal(status, 200, JSON.stringify(body));
    const xs = PLAN.map((p) => p.dims['quality.sharpness'] as number).sort((a, b) => a - b);
    assert.equal(body.kind, 'number');
    assert.equal(body.images, N);
    assert.equal(body.otherKindImages, STRAY, 'the string values of an older version are counted apart');
    close(body.stats.min, xs[0]!, 'min');
    close(body.stats.max, xs.at(-1)!, 'max');
    close(body.stats.avg, xs.reduce((a, b) => a + b, 0) / N, 'avg');
    close(body.stats.p50, percentile(xs, 0.5), 'p50');
    close(body.stats.p90, percentile(xs, 0.9), 'p90');
    assert.equal(body.wholeBins, false);

    for (const bins of [undefined, 7, 1]) {
      const h = (await get(`/v1/analytics/dimensions/quality.sharpness?${q({ from: D1, to: D2, bins })}`))
        .body.histogram as Array<{ from: number; to: number; images: number }>;
      assert.equal(h.length, bins ?? 20);
      assert.equal(
        h.reduce((n, b) => n + b.images, 0),
        N,
        'every image in exactly one bucket',
      );
      close(h[0]!.from, xs[0]!, 'first bucket starts at min');
      close(h.at(-1)!.to, xs.at(-1)!, 'last bucket ends at max');
      const width = (xs.at(-1)! - xs[0]!) / h.length;
      for (const [i, b] of h.entries()) {
        close(b.to - b.from, width, `bucket ${i} width`);
        const last = i === h.length - 1;
        assert.equal(
          b.images,
          xs.filter((x) => x >= b.from && (last ? x <= b.to : x < b.to)).length,
          `bucket ${i} [${b.from}, ${b.to})`,
        );
      }
    }

    const days = body.overTime as Array<{ day: string; images: number; avg: number }>;
    assert.deepEqual(
      days.map((d) => [d.day, d.images]),
      [D1, D2].map((day) => [day, PLAN.filter((p) => p.day === day).length]),
    );
    for (const d of days) {
      const own = PLAN.filter((p) => p.day === d.day).map((p) => p.dims['quality.sharpness'] as number);
      close(d.avg, own.reduce((a, b) => a + b, 0) / own.length, `${d.day} mean`);
    }
  });

  it('gives whole numbers one bucket per number', async () => {
    const { body } = await get(`/v1/analytics/dimensions/faces.count?${q({ from: D1, to: D2 })}`);
    assert.equal(body.wholeBins, true);
    assert.deepEqual(
      body.histogram,
      [0, 1, 2, 3].map((n) => ({
        from: n,
        to: n + 1,
        images: PLAN.filter((p) => p.dims['faces.count'] === n).length,
      })),
    );
    assert.deepEqual(body.stats, { min: 0, max: 3, avg: body.stats.avg, p50: 1, p90: 3 });
  });

  it('narrows to a customer, a source and a format', async () => {
    const beta = customers.get('Beta')!.id;
    for (const [filter, params] of [
      [{ customer: 'Beta' }, { customerId: beta }],
      [
        { source: 'kafka', format: 'png' },
        { source: 'kafka', format: 'png' },
      ],
      [
        { customer: 'Beta', source: 'kafka' },
        { customerId: beta, source: 'kafka' },
      ],
      [{ format: 'webp' }, { format: 'webp' }],
    ] as Array<[Filter, Record<string, string>]>) {
      const rows = planned(filter);
      const labels = (await get(`/v1/analytics/dimensions/tags.label?${q({ from: D1, to: D2, ...params })}`))
        .body;
      const sharp = (
        await get(`/v1/analytics/dimensions/quality.sharpness?${q({ from: D1, to: D2, ...params })}`)
      ).body;
      const what = JSON.stringify(filter);
      if (rows.length === 0) {
        assert.deepEqual(
          labels,
          {
            dimension: 'tags.label',
            from: D1,
            to: D2,
            kind: null,
            images: 0,
            otherKindImages: 0,
            overTime: [],
          },
          what,
        );
        continue;
      }
      const want = ranked(rows, 'tags.label');
      assert.equal(labels.images, rows.length, what);
      assert.deepEqual(labels.values, want.slice(0, 50), what);
      assert.deepEqual(
        labels.other,
        { values: Math.max(0, want.length - 50), images: want.slice(50).reduce((n, v) => n + v.images, 0) },
        what,
      );
      assert.equal(sharp.images, rows.length, what);
      assert.equal(
        sharp.histogram.reduce((n: number, b: { images: number }) => n + b.images, 0),
        rows.length,
        what,
      );
    }
  });

  it('answers an absent dimension or an empty range with an empty result', async () => {
    for (const path of [
      `/v1/analytics/dimensions/nothing.here?${q({ from: D1, to: D2 })}`,
      `/v1/analytics/dimensions/late.only?${q({ from: D1, to: D2 })}`,
      `/v1/analytics/dimensions/tags.label?${q({ from: '2001-01-01', to: '2001-01-02' })}`,
      // Allowed characters that mean something in SQL reach PostgreSQL only as a parameter.
      `/v1/analytics/dimensions/tags.x--?${q({ from: D1, to: D2 })}`,
      // The longest name a processor can have: its name (63) and a field (64).
      `/v1/analytics/dimensions/${'p'.repeat(63)}.${'F'.repeat(64)}?${q({ from: D1, to: D2 })}`,
    ]) {
      const { status, body } = await get(path);
      assert.equal(status, 200, path);
      assert.equal(body.kind, null, path);
      assert.equal(body.images, 0, path);
      assert.deepEqual(body.overTime, [], path);
    }
    const late = (await get(`/v1/analytics/dimensions/late.only?${q({ from: D3, to: D3 })}`)).body;
    assert.deepEqual(late.values, [{ value: 'x', images: LATE }]);
  });

  it('refuses a bad name, day or bin count with VALIDATION_FAILED', async () => {
    for (const path of [
      '/v1/analytics/dimensions/nodot',
      '/v1/analytics/dimensions/Quality.ok',
      '/v1/analytics/dimensions/1quality.ok',
      `/v1/analytics/dimensions/${encodeURIComponent("quality.o'k")}`,
      `/v1/analytics/dimensions/${encodeURIComponent('quality.ok;drop table facts')}`,
      `/v1/analytics/dimensions/${encodeURIComponent('quality.a.b')}`,
      `/v1/analytics/dimensions/${'p'.repeat(64)}.${'F'.repeat(64)}`,
      `/v1/analytics/dimensions/tags.label?${q({ from: '2025-6-1' })}`,
      `/v1/analytics/dimensions/tags.label?${q({ from: '2025-06-31' })}`,
      `/v1/analytics/dimensions/tags.label?${q({ customerId: 'not-a-uuid' })}`,
      `/v1/analytics/dimensions/quality.sharpness?${q({ bins: 0 })}`,
      `/v1/analytics/dimensions/quality.sharpness?${q({ bins: 201 })}`,
      `/v1/analytics/dimensions/quality.sharpness?${q({ bins: 'many' })}`,
    ]) {
      const { status, body } = await get(path);
      assert.equal(status, 400, `${path}: ${JSON.stringify(body)}`);
      assert.equal(body.error.code, 'VALIDATION_FAILED', path);
    }
  });

  it('answers a range whose from is after its to as empty', async () => {
    const one = await get(`/v1/analytics/dimensions/tags.label?${q({ from: D2, to: D1 })}`);
    assert.equal(one.status, 200, JSON.stringify(one.body));
    assert.equal(one.body.images, 0);
    assert.deepEqual(one.body.overTime, []);
    const all = await get(`/v1/analytics/dimensions?${q({ from: D2, to: D1 })}`);
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.deepEqual(all.body.dimensions, []);
  });

  it('is for analysts and admins only', async () => {
    const customerKey = customers.get('Alpha')!.apiKey;
    for (const path of ['/v1/analytics/dimensions', '/v1/analytics/dimensions/tags.label']) {
      const refused = await get(path, customerKey);
      assert.equal(refused.status, 403, path);
      assert.equal(refused.body.error.code, 'FORBIDDEN');
      const anonymous = await fetch(`${t.url}${path}`);
      assert.equal(anonymous.status, 401, path);
      assert.equal((await get(`${path}?${q({ from: D1, to: D2 })}`, ADMIN)).status, 200, path);
    }
  });
});
