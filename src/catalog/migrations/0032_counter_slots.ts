// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

// The counters every landing or outcome adds to: one row per key was one row every concurrent
// transaction of a customer (or, for the totals, of everyone) queued on until the one before it
// committed. Each key now has up to 16 rows, one per slot; a writer adds to the slot of its
// connection (pg_backend_pid() % 16), so concurrent writers mostly touch different rows, and a read
// sums the slots. Rows written before this have slot 0.
const TABLES: Array<[string, string[]]> = [
  ['analytics.rollup_hourly', ['hour', 'customer_id', 'format', 'source', 'outcome', 'error_code']],
  ['analytics.rollup_daily', ['day', 'customer_id', 'format', 'source', 'outcome', 'error_code']],
  ['analytics.rollup_daily_totals', ['day', 'format', 'source', 'outcome', 'error_code']],
  ['analytics.rollup_daily_customers', ['day', 'customer_id']],
  ['analytics.rollup_monthly_customers', ['month', 'customer_id']],
  ['analytics.rollup_processors_daily', ['day', 'customer_id', 'processor', 'version', 'outcome']],
  ['analytics.usage_daily', ['day', 'customer_id']],
  ['quota_usage', ['customer_id', 'month']],
];

const constraintOf = (table: string) => `${table.split('.').at(-1)}_pkey`;

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [table, key] of TABLES) {
    await sql`
      alter table ${sql.table(table)}
        add column slot smallint not null default 0,
        drop constraint ${sql.ref(constraintOf(table))},
        add primary key (${sql.join([...key, 'slot'].map((c) => sql.ref(c)))})`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // Back to one row per key: the slots are summed into slot 0 first. The hourly and daily rollups
  // have array histograms, summed element by element.
  for (const [table, key] of TABLES) {
    const keys = sql.join(key.map((c) => sql.ref(c)));
    const columns = (
      await sql<{ column_name: string; data_type: string }>`
        select column_name, data_type from information_schema.columns
        where table_schema || '.' || table_name = ${table.includes('.') ? table : `public.${table}`}
          and column_name <> 'slot' and column_name <> all(${key}::text[])`.execute(db)
    ).rows;
    const folded = columns.map(({ column_name: c, data_type: t }) =>
      t === 'ARRAY'
        ? sql`(select array_agg(v order by n) from (select n, sum(h)::int as v from ${sql.table(table)} t2,
             unnest(t2.${sql.ref(c)}) with ordinality as x(h, n)
             where (${keys}) = (${sql.join(key.map((k) => sql`t.${sql.ref(k)}`))}) group by n) s) as ${sql.ref(c)}`
        : t === 'jsonb'
          ? sql`(select coalesce(jsonb_object_agg(k, v), '{}') from (select e.key as k, sum(e.value::float8) as v
               from ${sql.table(table)} t2, jsonb_each_text(t2.${sql.ref(c)}) e
               where (${keys}) = (${sql.join(key.map((k) => sql`t.${sql.ref(k)}`))}) group by 1) s) as ${sql.ref(c)}`
          : sql`sum(${sql.ref(c)})::${sql.raw(t)} as ${sql.ref(c)}`,
    );
    await sql`create temporary table folded on commit drop as
      select ${keys}, ${sql.join(folded)} from ${sql.table(table)} t group by ${keys}`.execute(db);
    await sql`delete from ${sql.table(table)}`.execute(db);
    await sql`
      alter table ${sql.table(table)}
        drop constraint ${sql.ref(constraintOf(table))},
        drop column slot,
        add primary key (${keys})`.execute(db);
    await sql`insert into ${sql.table(table)} (${keys}, ${sql.join(columns.map((c) => sql.ref(c.column_name)))})
      select ${keys}, ${sql.join(columns.map((c) => sql.ref(c.column_name)))} from folded`.execute(db);
    await sql`drop table folded`.execute(db);
  }
}
