import type { Db } from '../catalog/database.ts';
import { deadLettersByCode } from '../catalog/dead-letters.ts';
import { failedByCode } from '../catalog/images.ts';

/**
 * What failed in a range, grouped by code: images whose processing failed (still in retention) and
 * Kafka messages sent to a dead-letter topic, with the newest few of each code as examples.
 */
export interface FailureExample {
  kind: 'image' | 'dead-letter';
  at: string;
  customerId: string | null;
  message: string;
  imageId?: string;
  format?: string;
  topic?: string;
  partition?: number;
  offset?: string;
  replayedAt?: string | null;
}

export interface FailureGroup {
  code: string;
  images: number;
  deadLetters: number;
  examples: FailureExample[];
}

export async function failuresByCode(
  db: Db,
  filter: { from: Date; to: Date; customerId?: string; code?: string },
  examples = 5,
): Promise<{ groups: FailureGroup[]; totals: { images: number; deadLetters: number } }> {
  const groups = new Map<string, FailureGroup>();
  const add = (code: string, total: string, count: 'images' | 'deadLetters', example: FailureExample) => {
    const group = groups.get(code) ?? { code, images: 0, deadLetters: 0, examples: [] };
    groups.set(code, group);
    group[count] = Number(total);
    group.examples.push(example);
  };
  for (const row of await failedByCode(db, filter, examples))
    add(row.code, row.total, 'images', {
      kind: 'image',
      at: row.processed_at.toISOString(),
      customerId: row.customer_id,
      message: row.error_message ?? '',
      imageId: row.id,
      format: row.format,
    });
  for (const row of await deadLettersByCode(db, filter, examples))
    add(row.code, row.total, 'deadLetters', {
      kind: 'dead-letter',
      at: row.dead_lettered_at.toISOString(),
      customerId: row.customer_id,
      message: row.message,
      topic: row.topic,
      partition: row.partition,
      offset: String(row.offset),
      replayedAt: row.replayed_at?.toISOString() ?? null,
    });
  const sorted = [...groups.values()].sort(
    (a, b) => b.images + b.deadLetters - (a.images + a.deadLetters) || (a.code < b.code ? -1 : 1),
  );
  return {
    groups: sorted,
    totals: {
      images: sorted.reduce((n, g) => n + g.images, 0),
      deadLetters: sorted.reduce((n, g) => n + g.deadLetters, 0),
    },
  };
}
