// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/**
 * A customer's name tells it apart from the others (the dashboard's filter, statistics, receipts):
 * two customers may not share one, compared ignoring case. Customers that already share a name
 * keep the oldest one as it is; each later one gets the start of its id appended, "Acme (5f0c1e2a)".
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    update customers c set name = c.name || ' (' || left(c.id::text, 8) || ')'
    from (
      select id, row_number() over (partition by lower(name) order by created_at, id) as n from customers
    ) d
    where d.id = c.id and d.n > 1`.execute(db);
  await sql`create unique index customers_name_unique on customers (lower(name))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index customers_name_unique`.execute(db);
}
