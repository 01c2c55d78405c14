import { sql } from 'kysely';
import type { Db } from './database.ts';
import type { ImageRow, NewImage, Rendition } from './schema.ts';

export async function getImage(db: Db, id: string, customerId?: string): Promise<ImageRow | undefined> {
  let query = db.selectFrom('images').selectAll().where('id', '=', id);
  if (customerId) query = query.where('customer_id', '=', customerId);
  return query.executeTakeFirst();
}

export async function findByIdempotencyKey(
  db: Db,
  customerId: string,
  key: string,
): Promise<ImageRow | undefined> {
  return db
    .selectFrom('images')
    .selectAll()
    .where('customer_id', '=', customerId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst();
}

/** Records a landed image (in the caller's transaction, which also queues its processing). */
export async function insertImage(db: Db, row: NewImage): Promise<ImageRow> {
  return db.insertInto('images').values(row).returningAll().executeTakeFirstOrThrow();
}

interface Cursor {
  receivedAt: string;
  id: string;
}

/**
 * A page's cursor: the last row's landing time (ms since the epoch) and id, "1764000000000_<uuid>".
 * Every string of this shape is a position, so a cursor is either well formed or refused by the
 * schema (CURSOR_PATTERN), never read into a query that fails.
 */
export const CURSOR_PATTERN =
  '^[0-9]{1,13}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export function encodeCursor(row: { received_at: Date; id: string }): string {
  return `${row.received_at.getTime()}_${row.id}`;
}

export function decodeCursor(text: string): Cursor | undefined {
  if (!new RegExp(CURSOR_PATTERN).test(text)) return undefined;
  const [ms, id] = text.split('_') as [string, string];
  return { receivedAt: new Date(Number(ms)).toISOString(), id };
}

/** A customer's images, newest first, one page at a time (keyset pagination: stable under inserts). */
/** A customer's images, newest first; every customer's when customerId is undefined (admin). */
export async function listImages(
  db: Db,
  customerId: string | undefined,
  options: { limit: number; cursor?: Cursor; status?: string },
): Promise<{ rows: ImageRow[]; next: string | undefined }> {
  let query = db
    .selectFrom('images')
    .selectAll()
    .$if(customerId !== undefined, (q) => q.where('customer_id', '=', customerId!))
    .orderBy('received_at', 'desc')
    .orderBy('id', 'desc')
    .limit(options.limit + 1);
  if (options.status) query = query.where('status', '=', options.status as ImageRow['status']);
  if (options.cursor) {
    const { receivedAt, id } = options.cursor;
    query = query.where(sql<boolean>`(received_at, id) < (${new Date(receivedAt)}, ${id})`);
  }
  const rows = await query.execute();
  const page = rows.slice(0, options.limit);
  const last = page.at(-1);
  return { rows: page, next: rows.length > options.limit && last ? encodeCursor(last) : undefined };
}

export function renditionsOf(row: ImageRow): Rendition[] {
  return row.renditions ?? [];
}
