import { utcDay } from '../clock.ts';
/**
 * The layout of the lake. Keys are partitioned by landing day and customer so that a day can be
 * listed, exported or purged as a unit, and so Hive-style readers (DuckDB, BigQuery, Spark) see
 * `dt` and `customer` as columns.
 */
export interface ImageKeyParts {
  imageId: string;
  customerId: string;
  receivedAt: Date;
}

function partition(parts: ImageKeyParts): string {
  return `dt=${utcDay(parts.receivedAt)}/customer=${parts.customerId}`;
}

export function rawKey(parts: ImageKeyParts, extension: string): string {
  return `raw/${partition(parts)}/${parts.imageId}.${extension}`;
}

export function renditionKey(parts: ImageKeyParts, name: string, extension: string): string {
  return `renditions/${partition(parts)}/${parts.imageId}/${name}.${extension}`;
}

export function renditionPrefix(parts: ImageKeyParts): string {
  return `renditions/${partition(parts)}/${parts.imageId}/`;
}

export function metadataKey(parts: ImageKeyParts): string {
  return `metadata/${partition(parts)}/${parts.imageId}.json`;
}

/** Every top-level area that holds per-image data and so falls under the retention window. */
export const IMAGE_AREAS = ['raw', 'renditions', 'metadata'] as const;

/** The day partition of a key, e.g. '2026-11-21' for 'raw/dt=2026-11-21/...'. */
export function dayOfKey(key: string): string | undefined {
  return /(?:^|\/)dt=(\d{4}-\d{2}-\d{2})\//.exec(key)?.[1];
}

/** The image id of an image copy's key (raw, rendition or sidecar), e.g. 'raw/dt=…/customer=…/<id>.jpg'. */
export function imageIdOfKey(key: string): string | undefined {
  return /^(?:raw|renditions|metadata)\/dt=[^/]+\/customer=[^/]+\/([0-9a-f-]{36})(?:[./]|$)/.exec(key)?.[1];
}

/** Where resumable (tus) uploads keep their bytes and their store's info until they land. */
export const TUS_AREA = 'tus/';

/** An upload's lake keys start with this: its bytes, and its store's .json, .info or .part. */
export function tusKeyPrefix(id: string): string {
  return `${TUS_AREA}${id}`;
}

/** The key of an upload's bytes, once complete (where its landing reads them). */
export const tusBytesKey = tusKeyPrefix;
