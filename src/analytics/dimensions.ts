import { type RawBuilder, sql } from 'kysely';
import type { Db } from '../catalog/database.ts';
import { AppError } from '../errors.ts';

/**
 * Processors' scalar output fields, kept in analytics.facts.dimensions as "processor.field": value,
 * read back as dimensions to group by. Only processed facts carry them, so everything here counts
 * images that were processed and had the field. Read from the facts (there is no rollup of values):
 * every query is bounded by the day range, which is indexed.
 */

/** processor.field: the processor's name as configured, then the declared field. */
export const DIMENSION_NAME = '^[a-z][a-z0-9_-]*\\.[A-Za-z0-9_\\-]+$';
const NAME = new RegExp(DIMENSION_NAME);
/** How many values a string or boolean breakdown names; the rest are summed as one. */
export const TOP_VALUES = 50;
/** How many values the per-day series names; the rest are summed per day as one. */
export const TOP_SERIES = 10;
export const DEFAULT_BINS = 20;
export const MAX_BINS = 200;

export type DimensionKind = 'string' | 'number' | 'boolean';
type Value = string | boolean;

export interface DimensionFilter {
  from: string;
  to: string;
  customerId?: string;
}

export interface BreakdownFilter extends DimensionFilter {
  dimension: string;
  source?: string;
  format?: string;
  bins?: number;
}

export interface DimensionInfo {
  name: string;
  kind: DimensionKind;
  /** Images whose value has this kind. */
  images: number;
  /** Distinct values, for strings and booleans. */
  values?: number;
  /** Images whose value has another kind (a processor changed a field's type); left out of `images`. */
  otherKindImages?: number;
}

export interface Breakdown {
  dimension: string;
  from: string;
  to: string;
  /** The kind most images in range have; null when no image in range has the dimension. */
  kind: DimensionKind | null;
  images: number;
  otherKindImages: number;
  /** Strings and booleans: the most common values, most images first. */
  values?: Array<{ value: Value; images: number }>;
  /** Strings and booleans: the values past the top ones, summed. */
  other?: { values: number; images: number };
  /** Numbers. */
  stats?: { min: number; max: number; avg: number; p50: number; p90: number };
  /** Numbers: equal-width buckets from min to max; `to` is exclusive except in the last bucket. */
  histogram?: Array<{ from: number; to: number; images: number }>;
  /** Numbers: true when every value is whole and each bucket is one whole number ([n, n + 1)). */
  wholeBins?: boolean;
  /**
   * Images with the dimension per day. Strings and booleans: per day and value, for the top values;
   * value null is the rest. Numbers: per day, with the day's mean.
   */
  overTime: Array<{ day: string; images: number; value?: Value | null; avg?: number }>;
}

const isKind = (kind: string | null): kind is DimensionKind =>
  kind === 'string' || kind === 'number' || kind === 'boolean';

/** A processor's name (at most 63 characters), a dot and a declared field's (at most 64). */
export const MAX_NAME_LENGTH = 128;

export function isDimensionName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

function conditions(f: DimensionFilter & { source?: string; format?: string }): RawBuilder<unknown> {
  const where: RawBuilder<unknown>[] = [sql`f.day between ${f.from}::date and ${f.to}::date`];
  if (f.customerId) where.push(sql`f.customer_id = ${f.customerId}::uuid`);
  if (f.source) where.push(sql`f.source = ${f.source}`);
  if (f.format) where.push(sql`f.format = ${f.format}`);
  return sql.join(where, sql` and `);
}

/** The dimensions present in facts of the range, by name. */
export async function listDimensions(db: Db, f: DimensionFilter): Promise<DimensionInfo[]> {
  // Values are counted by grouping (key, kind, value) first: a hash aggregate, where
  // count(distinct jsonb) would sort every value. Numbers are not counted by value. Names and kinds
  // are checked here, on the few rows that come back: in SQL, PostgreSQL would test every key of
  // every fact (which, measured, doubled the time).
  const { rows } = await sql<{ name: string; kind: string; images: number; values: number }>`
    with pairs as (
      select d.key, jsonb_typeof(d.value) as kind,
             case when jsonb_typeof(d.value) <> 'number' then d.value #>> '{}' end as value, count(*) as n
      from analytics.facts f cross join lateral jsonb_each(f.dimensions) d
      where ${conditions(f)}
      group by 1, 2, 3
    )
    select key as name, kind, sum(n)::int as images, count(value)::int as values
    from pairs group by 1, 2
    order by 1, 3 desc, 2`.execute(db);
  // A name with values of several kinds is listed once, as the kind most of its images have.
  const byName = new Map<string, DimensionInfo>();
  for (const r of rows) {
    if (!isDimensionName(r.name) || !isKind(r.kind)) continue;
    const seen = byName.get(r.name);
    if (seen) {
      seen.otherKindImages = (seen.otherKindImages ?? 0) + r.images;
      continue;
    }
    byName.set(r.name, {
      name: r.name,
      kind: r.kind,
      images: r.images,
      ...(r.kind === 'number' ? {} : { values: r.values }),
    });
  }
  return [...byName.values()];
}

type Row = {
  part: 'kind' | 'value' | 'day' | 'stats' | 'bin' | 'mean';
  day: string | null;
  value: string | null;
  bucket: number | null;
  images: number;
  values: number | null;
  min: number | null;
  max: number | null;
  avg: number | null;
  p50: number | null;
  p90: number | null;
  top: number | null;
  bins: number | null;
};

/**
 * One dimension's values in the range: counts by value (strings, booleans) or the distribution
 * (numbers), and by day. One statement, one scan of the range's facts: the kind most images have is
 * decided in it, and only that kind's part of the answer has rows.
 */
export async function breakdown(db: Db, f: BreakdownFilter): Promise<Breakdown> {
  if (!isDimensionName(f.dimension))
    throw new AppError('VALIDATION_FAILED', `"${f.dimension}" is not a dimension name (processor.field).`);
  const bins = f.bins ?? DEFAULT_BINS;
  if (!Number.isInteger(bins) || bins < 1 || bins > MAX_BINS)
    throw new AppError('VALIDATION_FAILED', `"bins" is a whole number from 1 to ${MAX_BINS}.`);
  const name = sql`${f.dimension}::text`;
  const { rows } = await sql<Row>`
    with v as materialized (
      select f.day, jsonb_typeof(f.dimensions -> ${name}) as kind, f.dimensions ->> ${name} as value
      from analytics.facts f
      where ${conditions(f)} and f.dimensions ? ${name}
    ),
    kinds as (select kind, count(*)::int as n from v group by kind),
    k as (select kind from kinds where kind in ('string', 'number', 'boolean') order by n desc, kind limit 1),
    -- Strings and booleans: images by day and value, ranked by value over the range.
    dv as (
      select v.day, v.value, count(*) as n from v
      where v.kind in ('string', 'boolean') and v.kind = (select kind from k) group by 1, 2
    ),
    ranked as (
      select value, sum(n) as n, row_number() over (order by sum(n) desc, value) as rank from dv group by value
    ),
    -- Numbers.
    x as (select v.day, v.value::float8 as x from v where v.kind = 'number' and (select kind from k) = 'number'),
    s as (
      select count(*)::int as n, min(x) as lo, max(x) as hi, avg(x) as mean,
             percentile_cont(0.5) within group (order by x) as p50,
             percentile_cont(0.9) within group (order by x) as p90,
             bool_and(x = trunc(x)) as whole
      from x
    ),
    -- Whole numbers spanning fewer steps than bins get a bucket per number; a single value, one bucket.
    g as (
      select lo,
             case when whole and hi - lo < ${bins} then hi + 1 else hi end as top,
             case when whole and hi - lo < ${bins} then (hi - lo + 1)::int when hi = lo then 1 else ${bins}::int end as bins
      from s
    )
    select 'kind' as part, null::date as day, kind as value, null::int as bucket, n as images, null::int as values,
           null::float8 as min, null::float8 as max, null::float8 as avg, null::float8 as p50, null::float8 as p90,
           null::float8 as top, null::int as bins
    from kinds
    union all
    select 'value', null, case when rank <= ${TOP_VALUES} then value end, null, sum(n)::int, count(*)::int,
           null, null, null, null, null, null, null
    from ranked group by 3
    union all
    select 'day', dv.day, case when r.rank <= ${TOP_SERIES} then dv.value end, null, sum(dv.n)::int, null,
           null, null, null, null, null, null, null
    from dv join ranked r on r.value = dv.value group by 2, 3
    union all
    select 'stats', null, null, null, s.n, null, s.lo, s.hi, s.mean, s.p50, s.p90, g.top, g.bins
    from s, g where s.n > 0
    union all
    select 'bin', null, null, case when g.top = g.lo then 1 else least(width_bucket(x.x, g.lo, g.top, g.bins), g.bins) end,
           count(*)::int, null, null, null, null, null, null, null, null
    from x, g group by 4
    union all
    select 'mean', x.day, null, null, count(*)::int, null, null, null, avg(x.x), null, null, null, null
    from x group by 2
    order by 1, 2, 5 desc, 3, 4`.execute(db);

  const kinds = rows.filter((r) => r.part === 'kind');
  const top = kinds.find((r) => isKind(r.value));
  const base = { dimension: f.dimension, from: f.from, to: f.to };
  const otherKindImages = kinds.reduce((n, r) => n + (r === top ? 0 : r.images), 0);
  if (!top) return { ...base, kind: null, images: 0, otherKindImages, overTime: [] };
  const kind = top.value as DimensionKind;
  return { ...base, kind, otherKindImages, ...(kind === 'number' ? numbers(rows) : categories(rows, kind)) };
}

function categories(rows: Row[], kind: 'string' | 'boolean') {
  const typed = (v: string): Value => (kind === 'boolean' ? v === 'true' : v);
  const counted = rows.filter((r) => r.part === 'value');
  const rest = counted.find((r) => r.value === null);
  return {
    images: counted.reduce((n, r) => n + r.images, 0),
    values: counted
      .filter((r) => r.value !== null)
      .map((r) => ({ value: typed(r.value!), images: r.images })),
    other: { values: rest?.values ?? 0, images: rest?.images ?? 0 },
    overTime: rows
      .filter((r) => r.part === 'day')
      .map((r) => ({ day: r.day!, value: r.value === null ? null : typed(r.value), images: r.images })),
  };
}

function numbers(rows: Row[]) {
  const stats = rows.find((r) => r.part === 'stats')!;
  const lo = stats.min!;
  const hi = stats.max!;
  const top = stats.top!;
  const n = stats.bins!;
  const counts = new Map(rows.filter((r) => r.part === 'bin').map((r) => [r.bucket!, r.images]));
  const width = (top - lo) / n;
  return {
    images: stats.images,
    stats: { min: lo, max: hi, avg: stats.avg!, p50: stats.p50!, p90: stats.p90! },
    histogram: Array.from({ length: n }, (_, i) => ({
      from: i === 0 ? lo : lo + i * width,
      to: i === n - 1 ? top : lo + (i + 1) * width,
      images: counts.get(i + 1) ?? 0,
    })),
    wholeBins: top !== hi,
    overTime: rows
      .filter((r) => r.part === 'mean')
      .map((r) => ({ day: r.day!, images: r.images, avg: r.avg! })),
  };
}
