// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // A record of every Kafka message sent to a dead-letter topic: what GET /v1/failures counts and
  // what `imagelake kafka replay-dlq` marks replayed. No image bytes (those stay in the topic,
  // which keeps them no longer than the window); pruned by the purge after the window.
  // (topic, partition, offset) is the original message's, unique: a redelivered message that is
  // dead-lettered twice is recorded once. customer_id is the header as sent (maybe no customer).
  await sql`
    create table dead_letters (
      id bigserial primary key,
      topic text not null,
      partition integer not null,
      "offset" bigint not null,
      customer_id text,
      message_id text,
      code text not null,
      message text not null,
      dead_lettered_at timestamptz not null,
      replayed_at timestamptz,
      unique (topic, partition, "offset")
    )`.execute(db);
  await sql`create index dead_letters_at on dead_letters (dead_lettered_at)`.execute(db);
  // Failed images by code and time, for GET /v1/failures and bulk retries.
  await sql`create index images_failed on images (processed_at, error_code) where status = 'failed'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index images_failed`.execute(db);
  await sql`drop table dead_letters`.execute(db);
}
