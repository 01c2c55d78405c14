import type { ImageBodyT } from '../api/schemas.ts';
import type { ImageRow } from '../catalog/schema.ts';
import type { DuplicateFacts } from '../similarity/search.ts';
import { labelsOf } from './image-record.ts';

/**
 * An image as its customer sees it: the answer of GET /v1/images/{id}, and the data of the
 * image.received, image.processed and image.failed webhooks. Rendition URLs are the API's own,
 * which need the customer's key.
 */
export function toImageBody(
  row: ImageRow,
  retentionMs: number,
  duplicates: DuplicateFacts = { duplicateOf: null, nearDuplicates: 0 },
): ImageBodyT {
  return {
    id: row.id,
    customerId: row.customer_id,
    source: row.source,
    status: row.status,
    format: row.format,
    width: row.width,
    height: row.height,
    bytes: Number(row.bytes),
    checksum: row.checksum,
    phash: row.phash,
    filename: row.filename,
    receivedAt: row.received_at.toISOString(),
    processedAt: row.processed_at?.toISOString() ?? null,
    expiresAt: new Date(row.received_at.getTime() + retentionMs).toISOString(),
    metadata: row.metadata,
    processors: row.processors ?? {},
    labels: labelsOf(row),
    renditions: (row.renditions ?? []).map((r) => ({
      name: r.name,
      format: r.format,
      width: r.width,
      height: r.height,
      bytes: r.bytes,
      url: `/v1/images/${row.id}/renditions/${r.name}`,
    })),
    ...duplicates,
    duplicateFlagged: row.duplicate_flagged,
    ...(row.status === 'failed' && row.error_code
      ? { error: { code: row.error_code, message: row.error_message ?? '' } }
      : {}),
  };
}
