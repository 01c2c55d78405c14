import type { Db } from '../catalog/database.ts';
import { countNear, nearestHashes } from '../catalog/image-hashes.ts';
import { firstsWithChecksum } from '../catalog/images.ts';
import type { ImageRow } from '../catalog/schema.ts';

/**
 * Search by fingerprint among one customer's images in retention (the similarity index only holds
 * those). Exact matches (the same SHA-256: the same bytes) and near ones (other bytes, perceptual
 * hash within maxDistance bits) are answered apart, each nearest first.
 */
export interface SimilarAnswer {
  maxDistance: number;
  exact: Array<{ id: string; landedAt: string }>;
  near: Array<{ id: string; distance: number; landedAt: string }>;
}

export async function similarTo(
  db: Db,
  q: {
    customerId: string;
    sha256: string;
    phash: string;
    flat: boolean;
    maxDistance: number;
    limit: number;
    exceptImageId?: string;
  },
): Promise<SimilarAnswer> {
  const exact = await nearestHashes(db, { ...q, kind: 'exact' });
  const near = q.flat ? [] : await nearestHashes(db, { ...q, kind: 'near' });
  return {
    maxDistance: q.maxDistance,
    exact: exact.map((r) => ({ id: r.imageId, landedAt: r.landedAt.toISOString() })),
    near: near.map((r) => ({ id: r.imageId, distance: r.distance, landedAt: r.landedAt.toISOString() })),
  };
}

/** What the image record says of duplicates: the first image with its bytes, and how many near ones. */
export interface DuplicateFacts {
  duplicateOf: string | null;
  nearDuplicates: number;
}

/** The duplicate facts of a page of images, read live (the images they match may have gone since). */
export async function duplicateFacts(
  db: Db,
  rows: ImageRow[],
  nearDistance: number,
): Promise<Map<string, DuplicateFacts>> {
  const firsts = await firstsWithChecksum(db, rows);
  const hashed = rows.filter((r) => r.phash !== null);
  const near = await countNear(
    db,
    hashed.map((r) => ({ id: r.id, customerId: r.customer_id, sha256: r.checksum, phash: r.phash! })),
    nearDistance,
  );
  return new Map(
    rows.map((r) => [r.id, { duplicateOf: firsts.get(r.id) ?? null, nearDuplicates: near.get(r.id) ?? 0 }]),
  );
}
