import { createHash, randomUUID } from 'node:crypto';
import type { Recording } from '../../src/ingest/land-group.ts';

export const NO_QUOTA = { images: Number.POSITIVE_INFINITY, bytes: Number.POSITIVE_INFINITY };

/**
 * A landing of `content` whose bytes would be in the lake, for the group commit's tests: the group
 * never reads the lake, only the row.
 */
export function recording(customerId: string, content: string, over: Partial<Recording> = {}): Recording {
  const id = randomUUID();
  return {
    row: {
      id,
      customer_id: customerId,
      source: 'kafka',
      status: 'received',
      idempotency_key: `kafka:${id}`,
      filename: null,
      checksum: createHash('sha256').update(content).digest('hex'),
      bytes: content.length,
      format: 'jpeg',
      raw_key: `raw/test/${id}.jpg`,
      received_at: new Date(),
      trace_id: null,
    },
    priority: 'interactive',
    traceparent: null,
    quota: NO_QUOTA,
    ...over,
  };
}
