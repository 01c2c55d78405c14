import { type RawBuilder, sql } from 'kysely';
import type { Db } from '../catalog/database.ts';
import { utcDay } from '../clock.ts';
import { addHistograms, LATENCY_BUCKET_COUNT, percentile } from './histogram.ts';

export interface SummaryFilter {
  from: string;
  to: string;
  customerId?: string;
  source?: string;
  format?: string;
}

/**
 * Everything the dashboard draws, read from the rollups only (never the facts), so it stays fast
 * over 400 days and thousands of customers. Ranges of two days or less are drawn by the hour.
 */
export async function summary(db: Db, f: SummaryFilter) {
  const hourly = Date.parse(`${f.to}T00:00:00Z`) - Date.parse(`${f.from}T00:00:00Z`) <= 86_400_000;
  // The smallest rollup that can answer: by the hour for short ranges; everyone's daily totals when
  // no customer is chosen; the full daily rollup (indexed by customer) when one is.
  const table = hourly
    ? sql.table('analytics.rollup_hourly')
    : f.customerId
      ? sql.table('analytics.rollup_daily')
      : sql.table('analytics.rollup_daily_totals');
  const bucket = hourly ? sql.ref('r.hour') : sql.ref('r.day');
  const range = hourly
    ? sql`r.hour >= ${f.from}::date and r.hour < ${f.to}::date + 1`
    : sql`r.day between ${f.from}::date and ${f.to}::date`;
  const conditions: RawBuilder<unknown>[] = [range];
  if (f.customerId) conditions.push(sql`r.customer_id = ${f.customerId}`);
  if (f.source) conditions.push(sql`r.source = ${f.source}`);
  if (f.format) conditions.push(sql`r.format = ${f.format}`);
  const where = sql.join(conditions, sql` and `);
  // Customers: their own daily rollup unless source or format narrow the question.
  const byCustomer = !hourly && !f.source && !f.format;
  const customerFilter = f.customerId ? sql`and customer_id = ${f.customerId}` : sql``;
  const { fullFrom, fullTo } = wholeMonths(f.from, f.to);
  // Whole months from the monthly rollup, the days around them from the daily one.
  const perCustomer = sql`(
    select customer_id, images, failed, bytes from analytics.rollup_monthly_customers
    where month >= ${fullFrom}::date and month < ${fullTo}::date ${customerFilter}
    union all
    select customer_id, images, failed, bytes from analytics.rollup_daily_customers
    where day between ${f.from}::date and ${f.to}::date and not (day >= ${fullFrom}::date and day < ${fullTo}::date) ${customerFilter}
  )`;
  const customersTable = byCustomer
    ? perCustomer
    : hourly
      ? sql.table('analytics.rollup_hourly')
      : sql.table('analytics.rollup_daily');
  const customerWhere = byCustomer ? sql`true` : where;
  const failedSum = byCustomer
    ? sql`sum(r.failed)`
    : sql`coalesce(sum(r.images) filter (where r.outcome = 'failed'), 0)`;
  const rows = async <T>(query: RawBuilder<T>) => (await query.execute(db)).rows;

  const [[totals], overTime, latencyRows, topCustomers, [customerCount], bySource, byFormat, failures] =
    await Promise.all([
      rows(sql<Record<string, string>>`
      select coalesce(sum(images), 0)::bigint as images,
             coalesce(sum(images) filter (where outcome = 'processed'), 0)::bigint as processed,
             coalesce(sum(images) filter (where outcome = 'failed'), 0)::bigint as failed,
             coalesce(sum(bytes), 0)::bigint as bytes,
             coalesce(sum(megapixels), 0)::float8 as megapixels
      from ${table} r where ${where}`),
      rows(sql<{ bucket: Date | string; format: string; images: string; bytes: string }>`
      select ${bucket} as bucket, format, sum(images)::bigint as images, sum(bytes)::bigint as bytes
      from ${table} r where ${where} group by 1, 2 order by 1, 2`),
      rows(sql<{ bucket: Date | string; hist: number[] }>`
      select ${bucket} as bucket, array[${sql.join(Array.from({ length: LATENCY_BUCKET_COUNT }, (_, i) => sql`sum(latency_hist[${sql.lit(i + 1)}])::int`))}] as hist
      from ${table} r where ${where} and outcome = 'processed' group by 1 order by 1`),
      rows(sql<{ customerId: string; name: string | null; images: string; bytes: string; failed: string }>`
      select r.customer_id as "customerId", max(c.name) as name, sum(r.images)::bigint as images, sum(r.bytes)::bigint as bytes,
             ${failedSum}::bigint as failed
      from ${customersTable} r left join analytics.customers c on c.id = r.customer_id
      where ${customerWhere} group by 1 order by images desc, 1 limit 10`),
      rows(
        sql<{
          customers: number;
        }>`select count(distinct r.customer_id)::int as customers from ${customersTable} r where ${customerWhere}`,
      ),
      rows(sql<{ source: string; images: string; bytes: string }>`
      select source, sum(images)::bigint as images, sum(bytes)::bigint as bytes from ${table} r where ${where} group by 1 order by 2 desc`),
      rows(sql<{ format: string; images: string; bytes: string }>`
      select format, sum(images)::bigint as images, sum(bytes)::bigint as bytes from ${table} r where ${where} group by 1 order by 2 desc`),
      rows(sql<{ errorCode: string; images: string }>`
      select error_code as "errorCode", sum(images)::bigint as images from ${table} r
      where ${where} and outcome = 'failed' group by 1 order by 2 desc`),
    ]);

  // Percentiles come from adding histograms, per bucket and overall.
  const perBucket = new Map<string, number[]>();
  let overall: number[] = [];
  for (const row of latencyRows) {
    const key = stamp(row.bucket);
    perBucket.set(key, addHistograms(perBucket.get(key) ?? [], row.hist));
    overall = addHistograms(overall, row.hist);
  }
  const n = (v: string | undefined) => Number(v ?? 0);
  return {
    from: f.from,
    to: f.to,
    granularity: hourly ? 'hour' : 'day',
    totals: {
      images: n(totals?.images),
      processed: n(totals?.processed),
      failed: n(totals?.failed),
      bytes: n(totals?.bytes),
      megapixels: Math.round(n(totals?.megapixels) * 10) / 10,
      customers: customerCount?.customers ?? 0,
      p50Ms: percentile(overall, 0.5),
      p95Ms: percentile(overall, 0.95),
    },
    overTime: overTime.map((r) => ({
      bucket: stamp(r.bucket),
      format: r.format,
      images: n(r.images),
      bytes: n(r.bytes),
    })),
    latency: [...perBucket].map(([b, hist]) => ({
      bucket: b,
      p50Ms: percentile(hist, 0.5),
      p95Ms: percentile(hist, 0.95),
    })),
    topCustomers: topCustomers.map((r) => ({
      customerId: r.customerId,
      name: r.name ?? r.customerId,
      images: n(r.images),
      bytes: n(r.bytes),
      failed: n(r.failed),
    })),
    bySource: bySource.map((r) => ({ source: r.source, images: n(r.images), bytes: n(r.bytes) })),
    byFormat: byFormat.map((r) => ({ format: r.format, images: n(r.images), bytes: n(r.bytes) })),
    failures: failures.map((r) => ({ errorCode: r.errorCode, images: n(r.images) })),
  };
}

/** The whole calendar months inside [from, to], as [fullFrom, fullTo); empty when fullFrom >= fullTo. */
export function wholeMonths(from: string, to: string): { fullFrom: string; fullTo: string } {
  const start = new Date(`${from}T00:00:00Z`);
  if (start.getUTCDate() !== 1) start.setUTCMonth(start.getUTCMonth() + 1, 1);
  const end = new Date(`${to}T00:00:00Z`);
  end.setUTCDate(end.getUTCDate() + 1);
  end.setUTCDate(1);
  return start < end
    ? { fullFrom: utcDay(start), fullTo: utcDay(end) }
    : { fullFrom: utcDay(start), fullTo: utcDay(start) };
}

function stamp(value: Date | string): string {
  return value instanceof Date ? value.toISOString() : String(value);
}

/** Values for the dashboard's filter menus. */
export async function filterOptions(db: Db) {
  const customers = await sql<{
    id: string;
    name: string;
  }>`select id, name from analytics.customers order by name`.execute(db);
  const formats = await sql<{
    format: string;
  }>`select distinct format from analytics.rollup_daily order by 1`.execute(db);
  const sources = await sql<{
    source: string;
  }>`select distinct source from analytics.rollup_daily order by 1`.execute(db);
  return {
    customers: customers.rows,
    formats: formats.rows.map((r) => r.format),
    sources: sources.rows.map((r) => r.source),
  };
}
