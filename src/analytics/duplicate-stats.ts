import { sql } from 'kysely';
import type { Db } from '../catalog/database.ts';

/**
 * Duplicates per customer per landing day, exact (the same bytes as an earlier image) and near (a
 * perceptual hash within the near distance of an earlier image's), as each image was processed.
 * Read from analytics.rollup_daily_customers, so kept for the statistics window like every count.
 */
export interface DuplicateDay {
  day: string;
  customerId: string;
  images: number;
  exact: number;
  near: number;
}

export async function duplicatesByDay(
  db: Db,
  f: { from: string; to: string; customerId?: string },
): Promise<DuplicateDay[]> {
  const customer = f.customerId ? sql`and customer_id = ${f.customerId}::uuid` : sql``;
  const { rows } = await sql<DuplicateDay>`
    select day::text as day, customer_id as "customerId", sum(images)::int as images,
           sum(exact_duplicates)::int as exact, sum(near_duplicates)::int as near
    from analytics.rollup_daily_customers
    where day between ${f.from}::date and ${f.to}::date ${customer}
    group by day, customer_id
    having sum(exact_duplicates) > 0 or sum(near_duplicates) > 0
    order by day, customer_id`.execute(db);
  return rows;
}
