import { sql } from 'kysely';
import type { Db } from '../catalog/database.ts';

export const STAT_DIMENSIONS = ['day', 'customer', 'format', 'source', 'status'] as const;
export type StatDimension = (typeof STAT_DIMENSIONS)[number];

const COLUMN: Record<StatDimension, string> = {
  day: 'day',
  customer: 'customer_id',
  format: 'format',
  source: 'source',
  status: 'outcome',
};

export interface StatsQuery {
  from: string;
  to: string;
  groupBy: StatDimension[];
  customerId?: string;
}

export type StatsRow = Partial<Record<StatDimension, string>> & {
  customerName?: string;
  images: number;
  bytes: number;
};

/**
 * Sums the daily rollup over [from, to] (inclusive days), grouped by the requested dimensions. A
 * group that sums to no image (a failure taken back when its image was retried) is left out.
 */
export async function queryStats(db: Db, q: StatsQuery): Promise<StatsRow[]> {
  const dims = [...new Set(q.groupBy)];
  const select = dims.map((d) => sql`s.${sql.ref(COLUMN[d])}::text as ${sql.ref(d)}`);
  const withName = dims.includes('customer');
  const result = await sql<Record<string, string>>`
    select ${sql.join([...select, ...(withName ? [sql`max(c.name) as "customerName"`] : []), sql`sum(s.images)::bigint as images`, sql`sum(s.bytes)::bigint as bytes`])}
    from analytics.rollup_daily s left join customers c on c.id = s.customer_id
    where s.day between ${q.from}::date and ${q.to}::date
    ${q.customerId ? sql`and s.customer_id = ${q.customerId}` : sql``}
    ${dims.length ? sql`group by ${sql.join(dims.map((d) => sql`s.${sql.ref(COLUMN[d])}`))}` : sql``}
    ${dims.length ? sql`having sum(s.images) <> 0` : sql``}
    ${dims.length ? sql`order by ${sql.join(dims.map((d) => sql`s.${sql.ref(COLUMN[d])}`))}` : sql``}`.execute(
    db,
  );
  return result.rows.map(
    (r) => ({ ...r, images: Number(r.images ?? 0), bytes: Number(r.bytes ?? 0) }) as StatsRow,
  );
}
