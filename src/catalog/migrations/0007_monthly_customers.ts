// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/** Customer rankings over long ranges read whole months here, and only the edge days day by day. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table analytics.rollup_monthly_customers (
      month date not null,
      customer_id uuid not null,
      images bigint not null,
      failed bigint not null,
      bytes bigint not null,
      primary key (month, customer_id)
    )`.execute(db);
  await sql`
    insert into analytics.rollup_monthly_customers
    select date_trunc('month', day)::date, customer_id, sum(images), sum(failed), sum(bytes)
    from analytics.rollup_daily_customers group by 1, 2`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table analytics.rollup_monthly_customers`.execute(db);
}
