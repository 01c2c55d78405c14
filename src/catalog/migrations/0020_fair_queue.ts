// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/**
 * Fair processing across customers. Every job carries its customer and a priority class
 * ('interactive' or 'bulk') and a virtual time `vt` stamped when it is queued: a customer's jobs
 * follow one another 1/weight apart, starting no earlier than the head of the queue, so claiming
 * in (priority, vt) order is a weighted round robin across customers, oldest first within one.
 * `queue_shares` keeps each customer's last stamp per priority; `customers.weight` its share.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table jobs
      add column customer_id uuid,
      add column priority text not null default 'interactive' check (priority in ('interactive', 'bulk')),
      add column vt double precision not null default 0`.execute(db);
  await sql`update jobs j set customer_id = i.customer_id from images i where i.id = j.image_id`.execute(db);
  await sql`update jobs set priority = 'bulk' where kind = 'reprocess-image'`.execute(db);
  await sql`alter table jobs alter column customer_id set not null`.execute(db);
  // The claim walks this index from its head: interactive before bulk ('interactive' > 'bulk'), then vt.
  await sql`create index jobs_fair on jobs (priority desc, vt, id) where state = 'queued'`.execute(db);
  // A customer's own waiting jobs: whether it has any (stamping) and how many (queue share).
  await sql`create index jobs_customer on jobs (customer_id, priority, vt) where state = 'queued'`.execute(
    db,
  );
  await sql`
    alter table customers
      add column weight integer not null default 1 check (weight between 1 and 1000)`.execute(db);
  await sql`
    create table queue_shares (
      customer_id uuid not null,
      priority text not null check (priority in ('interactive', 'bulk')),
      last_vt double precision not null,
      primary key (customer_id, priority)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table queue_shares`.execute(db);
  await sql`alter table customers drop column weight`.execute(db);
  await sql`drop index jobs_customer`.execute(db);
  await sql`drop index jobs_fair`.execute(db);
  await sql`alter table jobs drop column vt, drop column priority, drop column customer_id`.execute(db);
}
