// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/**
 * Near-duplicates. image_hashes is the similarity index: one row per processed image, with its
 * perceptual hash split into four 16-bit bands, each indexed with the customer (multi-index hashing:
 * two hashes within distance r agree within floor(r/4) bits on at least one band, so a search probes
 * each band's few neighbours instead of scanning). Each band's index includes the hash and the image
 * id, so the distance is checked in the index alone. A flat image (no structure to hash) has no bands. exact_of and near_of name the earlier image it
 * matched when it was processed (the groups and the daily counts read them); flat marks an image
 * with no structure to hash, which has exact duplicates only (and null bands). Existing processed images are indexed
 * here, from their stored hash (their flatness is unknown until reprocessed: false).
 *
 * customers.duplicates is the customer's policy for an exact re-upload; images.duplicate_flagged marks
 * an image the policy "flag" caught; images (customer_id, checksum) finds an exact re-upload at landing.
 * The daily customer rollup counts exact and near duplicates.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table customers add column duplicates text not null default 'accept'
      constraint customers_duplicates_policy check (duplicates in ('accept', 'flag', 'reject'))`.execute(db);
  await sql`alter table images add column duplicate_flagged boolean not null default false`.execute(db);
  await sql`create index images_customer_checksum on images (customer_id, checksum, received_at)`.execute(db);
  await sql`
    create table image_hashes (
      image_id uuid primary key,
      customer_id uuid not null,
      sha256 text not null,
      phash bigint not null,
      b0 integer,
      b1 integer,
      b2 integer,
      b3 integer,
      landed_at timestamptz not null,
      flat boolean not null default false,
      exact_of uuid,
      near_of uuid,
      near_distance smallint
    )`.execute(db);
  for (const band of ['b0', 'b1', 'b2', 'b3'])
    await sql`create index ${sql.raw(`image_hashes_${band}`)} on image_hashes (customer_id, ${sql.ref(band)}) include (phash, image_id)`.execute(
      db,
    );
  await sql`create index image_hashes_sha256 on image_hashes (customer_id, sha256, landed_at)`.execute(db);
  await sql`create index image_hashes_landed on image_hashes (customer_id, landed_at)`.execute(db);
  await sql`
    insert into image_hashes (image_id, customer_id, sha256, phash, b0, b1, b2, b3, landed_at)
    select id, customer_id, checksum, ('x' || phash)::bit(64)::bigint,
           ('x' || substr(phash, 1, 4))::bit(16)::int, ('x' || substr(phash, 5, 4))::bit(16)::int,
           ('x' || substr(phash, 9, 4))::bit(16)::int, ('x' || substr(phash, 13, 4))::bit(16)::int, received_at
    from images where status = 'processed' and phash ~ '^[0-9a-f]{16}$'`.execute(db);
  await sql`
    alter table analytics.rollup_daily_customers
      add column exact_duplicates bigint not null default 0,
      add column near_duplicates bigint not null default 0`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table analytics.rollup_daily_customers drop column exact_duplicates, drop column near_duplicates`.execute(
    db,
  );
  await sql`drop table image_hashes`.execute(db);
  await sql`drop index images_customer_checksum`.execute(db);
  await sql`alter table images drop column duplicate_flagged`.execute(db);
  await sql`alter table customers drop column duplicates`.execute(db);
}
