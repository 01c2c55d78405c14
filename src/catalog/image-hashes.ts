import { sql } from 'kysely';
import type { Db } from './database.ts';
import { PREPARE } from './prepared-statements.ts';

/**
 * The similarity index's owner (image_hashes, 0026): one row per processed image with its SHA-256
 * and its 64-bit perceptual hash, the hash also split into four 16-bit bands. Multi-index hashing:
 * if two hashes differ in at most r bits, one of the four bands differs in at most floor(r/4) bits
 * (pigeonhole), so a search probes, on each band's index, the band values within that many bits of
 * the query's (1 value for r < 4, 17 for r < 8, 137 for r < 12) and checks the full distance with
 * bit_count only on what those probes return. bench/similar.ts measures it against a sequential scan.
 */

export const BANDS = 4;
const BAND_BITS = 16;
/** The largest distance a search accepts: past it the probes grow (2517 a band at 16) and so does the noise. */
export const MAX_DISTANCE = 15;

/** A hash's four bands, most significant first (hex digits 1-4, 5-8, 9-12, 13-16). */
export function bandsOf(phash: string): number[] {
  return Array.from({ length: BANDS }, (_, i) => Number.parseInt(phash.slice(i * 4, i * 4 + 4), 16));
}

/** The hash as PostgreSQL's signed bigint (two's complement of the 64 bits), in decimal. */
export function signedOf(phash: string): string {
  return BigInt.asIntN(64, BigInt(`0x${phash}`)).toString();
}

/** The stored bigint back to the 16 hex digits the API shows. */
export function hexOf(signed: string): string {
  return BigInt.asUintN(64, BigInt(signed)).toString(16).padStart(16, '0');
}

/** Every 16-bit value within `radius` bits of `value`. */
export function bandNeighbours(value: number, radius: number): number[] {
  const out = [value];
  const flip = (from: number, start: number, left: number) => {
    for (let bit = start; bit < BAND_BITS; bit++) {
      const next = from ^ (1 << bit);
      out.push(next);
      if (left > 1) flip(next, bit + 1, left - 1);
    }
  };
  if (radius > 0) flip(value, 0, radius);
  return out;
}

/**
 * The customer's images within `maxDistance` of `phash`, as (image_id, distance): one index-only scan
 * per band (each band's index includes the hash and the image id, so the distance is checked in the
 * index and the table is read only for what matched), their union without doubles. Flat images have
 * no bands (null), so they never come back.
 */
function nearCandidates(customerId: string, phash: string, maxDistance: number) {
  const radius = Math.floor(maxDistance / BANDS);
  const distance = sql`bit_count((phash # ${signedOf(phash)}::bigint)::bit(64))`;
  const scans = bandsOf(phash).map(
    (band, i) => sql`
      select image_id, ${distance}::int as distance from image_hashes
      where customer_id = ${customerId} and ${sql.ref(`b${i}`)} = any(${bandNeighbours(band, radius)}::int[])
        and ${distance} <= ${maxDistance}`,
  );
  return sql`(${sql.join(scans, sql` union `)})`;
}

export interface IndexedHash {
  imageId: string;
  customerId: string;
  sha256: string;
  phash: string;
  landedAt: Date;
  flat: boolean;
  exactOf: string | null;
  nearOf: string | null;
  nearDistance: number | null;
}

/** An indexed image's bands: none for a flat one, whose bits are noise (no near search finds it; exact ones still do). */
function indexedBands(h: { flat: boolean; phash: string }): Array<number | null> {
  return h.flat ? [null, null, null, null] : bandsOf(h.phash);
}

/**
 * Adds an image to the index with matches already known; a second add changes nothing. The outcome
 * uses `indexHash`, which finds the matches in the same statement; bench/similar.ts seeds with this.
 */
export async function addHash(db: Db, h: IndexedHash): Promise<void> {
  const [b0, b1, b2, b3] = indexedBands(h);
  await db
    .insertInto('image_hashes')
    .values({
      image_id: h.imageId,
      customer_id: h.customerId,
      sha256: h.sha256,
      phash: signedOf(h.phash),
      b0,
      b1,
      b2,
      b3,
      landed_at: h.landedAt,
      flat: h.flat,
      exact_of: h.exactOf,
      near_of: h.nearOf,
      near_distance: h.nearDistance,
    })
    .onConflict((oc) => oc.column('image_id').doNothing())
    .execute();
}

export interface SimilarHash {
  imageId: string;
  sha256: string;
  distance: number;
  landedAt: Date;
}

/** What a search by fingerprint looks for, among one customer's images. */
interface Search {
  customerId: string;
  sha256: string;
  phash: string;
  maxDistance: number;
  limit: number;
  exceptImageId?: string;
}

/** The same bytes have the same perceptual hash: distance 0, oldest first through image_hashes_sha256. */
function exactSearch(q: Search) {
  const except = q.exceptImageId ? sql`and h.image_id <> ${q.exceptImageId}` : sql``;
  return sql<SimilarHash>`
    select h.image_id as "imageId", h.sha256, h.landed_at as "landedAt", 0 as distance
    from image_hashes h
    where h.customer_id = ${q.customerId} and h.sha256 = ${q.sha256} ${except}
    order by h.landed_at, h.image_id
    limit ${q.limit}`;
}

/** Other bytes within `maxDistance`, nearest first (then oldest first), through the band indexes. */
function nearSearch(q: Search) {
  const except = q.exceptImageId ? sql`and h.image_id <> ${q.exceptImageId}` : sql``;
  return sql<SimilarHash>`
    select h.image_id as "imageId", h.sha256, h.landed_at as "landedAt", c.distance
    from ${nearCandidates(q.customerId, q.phash, q.maxDistance)} c join image_hashes h on h.image_id = c.image_id
    where h.sha256 <> ${q.sha256} ${except}
    order by c.distance, h.landed_at, h.image_id
    limit ${q.limit}`;
}

/**
 * A customer's images like a fingerprint, nearest first (then oldest first): those with the same
 * bytes (exact), or those with other bytes within `maxDistance` (near).
 */
export async function nearestHashes(db: Db, q: Search & { kind: 'exact' | 'near' }): Promise<SimilarHash[]> {
  const query =
    q.kind === 'exact'
      ? exactSearch(q)
      : // Prepared: its generic plan probes the same band indexes, and saves a plan as long as the run.
        sql<SimilarHash>`${PREPARE} ${nearSearch(q)}`;
  return (await query.execute(db)).rows;
}

/** The plan of a near search (bench/similar.ts prints it: one index-only scan per band, no table scan). */
export async function explainNear(
  db: Db,
  customerId: string,
  phash: string,
  maxDistance: number,
): Promise<string[]> {
  const { rows } = await sql<{ 'QUERY PLAN': string }>`
    explain select c.image_id from ${nearCandidates(customerId, phash, maxDistance)} c`.execute(db);
  return rows.map((r) => r['QUERY PLAN']);
}

/** Whether an indexed image is flat (no structure to hash); undefined when it is not indexed. */
export async function isFlatImage(db: Db, imageId: string): Promise<boolean | undefined> {
  const row = await db
    .selectFrom('image_hashes')
    .select('flat')
    .where('image_id', '=', imageId)
    .executeTakeFirst();
  return row?.flat;
}

/**
 * Adds a processed image to the index with what it matches among the customer's earlier images (the
 * first with its bytes; the nearest other within `maxDistance`) and returns those matches, in one
 * statement: searches and insert were three round trips for every image processed. Prepared, as the
 * near search is. A flat image looks up its bytes only (its bits are noise) and gets no bands. A
 * second add changes nothing.
 */
export async function indexHash(
  db: Db,
  h: {
    imageId: string;
    customerId: string;
    sha256: string;
    phash: string;
    landedAt: Date;
    flat: boolean;
    maxDistance: number;
  },
): Promise<{ exactOf: string | null; nearOf: string | null; nearDistance: number | null }> {
  const [b0, b1, b2, b3] = indexedBands(h);
  const search: Search = { ...h, limit: 1, exceptImageId: h.imageId };
  const near = h.flat ? sql`select null::uuid as "imageId", null::int as distance` : nearSearch(search);
  const { rows } = await sql<{
    exact_of: string | null;
    near_of: string | null;
    near_distance: number | null;
  }>`${PREPARE}
    with matched as (
      select (select e."imageId" from (${exactSearch(search)}) e) as exact_of,
             n."imageId" as near_of, n.distance as near_distance
      from (select 1) one left join lateral (${near}) n on true
    ), added as (
      insert into image_hashes (image_id, customer_id, sha256, phash, b0, b1, b2, b3, landed_at, flat, exact_of, near_of, near_distance)
      select ${h.imageId}::uuid, ${h.customerId}::uuid, ${h.sha256}::text, ${signedOf(h.phash)}::bigint,
             ${b0}::int, ${b1}::int, ${b2}::int, ${b3}::int, ${h.landedAt}::timestamptz, ${h.flat}::boolean,
             m.exact_of, m.near_of, m.near_distance
      from matched m
      on conflict (image_id) do nothing
    )
    select exact_of, near_of, near_distance from matched`.execute(db);
  const row = rows[0];
  return {
    exactOf: row?.exact_of ?? null,
    nearOf: row?.near_of ?? null,
    nearDistance: row?.near_distance ?? null,
  };
}

/** How many of a customer's other images, with other bytes, are within `maxDistance` of each image. */
export async function countNear(
  db: Db,
  images: Array<{ id: string; customerId: string; sha256: string; phash: string }>,
  maxDistance: number,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  // One indexed statement each; a page of images is at most a few hundred, read concurrently by the pool.
  await Promise.all(
    images.map(async (image) => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n
        from ${nearCandidates(image.customerId, image.phash, maxDistance)} c join image_hashes h on h.image_id = c.image_id
        where h.sha256 <> ${image.sha256} and h.image_id <> ${image.id}
          and not exists (select 1 from image_hashes s where s.image_id = ${image.id} and s.flat)`.execute(
        db,
      );
      counts.set(image.id, rows[0]?.n ?? 0);
    }),
  );
  return counts;
}

/** An indexed image and what it matched when it was processed. */
export interface MatchedHash {
  imageId: string;
  sha256: string;
  landedAt: Date;
  exactOf: string | null;
  nearOf: string | null;
  nearDistance: number | null;
}

/** A customer's indexed images landed from day `from` to day `to` (UTC, inclusive) that matched an earlier one. */
export async function matchedBetween(
  db: Db,
  customerId: string,
  from: string,
  to: string,
  limit: number,
): Promise<MatchedHash[]> {
  const { rows } = await sql<MatchedHash>`
    select image_id as "imageId", sha256, landed_at as "landedAt", exact_of as "exactOf", near_of as "nearOf",
           near_distance as "nearDistance"
    from image_hashes
    where customer_id = ${customerId} and (exact_of is not null or near_of is not null)
      and landed_at >= ${from}::date::timestamp at time zone 'UTC'
      and landed_at < (${to}::date + 1)::timestamp at time zone 'UTC'
    order by landed_at, image_id
    limit ${limit}`.execute(db);
  return rows;
}

/** The index rows of these images (those still indexed), for the groups' members. */
export async function hashesOf(
  db: Db,
  customerId: string,
  imageIds: string[],
): Promise<Array<{ imageId: string; sha256: string; landedAt: Date }>> {
  if (imageIds.length === 0) return [];
  return db
    .selectFrom('image_hashes')
    .select(['image_id as imageId', 'sha256', 'landed_at as landedAt'])
    .where('customer_id', '=', customerId)
    .where('image_id', 'in', imageIds)
    .execute();
}

// ---- Retention: the index follows its images ----

/** Deletes these images' index rows (in the purge's transaction); returns the image ids that had one. */
export async function deleteHashesForImages(trx: Db, imageIds: string[]): Promise<string[]> {
  if (imageIds.length === 0) return [];
  const rows = await trx
    .deleteFrom('image_hashes')
    .where('image_id', 'in', imageIds)
    .returning('image_id')
    .execute();
  return rows.map((r) => r.image_id);
}

/**
 * Index rows whose image is gone: the purge deletes both in one transaction and processing adds a row
 * only beside its image, so any is a fault the audit reports and the next purge deletes.
 */
export async function orphanHashes(
  db: Db,
  limit: number,
): Promise<Array<{ imageId: string; landedAt: Date }>> {
  const { rows } = await sql<{ imageId: string; landedAt: Date }>`
    select h.image_id as "imageId", h.landed_at as "landedAt"
    from image_hashes h where not exists (select 1 from images i where i.id = h.image_id)
    order by h.landed_at
    limit ${limit}`.execute(db);
  return rows;
}
