import { sql, type Updateable } from 'kysely';
import type { Db } from './database.ts';
import { PREPARE } from './prepared-statements.ts';
import type { ImageRow, ImagesTable, NewImage, Rendition } from './schema.ts';

/**
 * The images table's owner: every query on it lives here (landing, processing outcomes,
 * reprocessing, listing), named for what it does.
 */

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

/**
 * A customer's images waiting to be processed (status received), for its queue share, counted up to
 * `atMost`: what a landing compares with its limits, so a customer with a large backlog (landed from
 * Kafka, which no share holds back) costs no more per upload than one at its share. The partial
 * index images_waiting_by_customer holds only waiting images.
 */
export async function countWaiting(db: Db, customerId: string, atMost: number): Promise<number> {
  // Through images_waiting_by_customer (status = 'received'). The status and the bound are written
  // in, so the statement is prepared and its plan still sees the partial index.
  const { rows } = await sql<{ n: string }>`${PREPARE}
    select count(*) as n from (
      select id from images where customer_id = ${customerId} and status = 'received'
      limit ${sql.lit(Math.floor(atMost))}) waiting`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * The first image of a customer with these bytes (its checksum), landed before `before` when given:
 * what an exact duplicate is a duplicate of. Read through images_customer_checksum.
 */
export async function firstWithChecksum(
  db: Db,
  customerId: string,
  checksum: string,
  before?: { receivedAt: Date; id: string },
): Promise<string | undefined> {
  let query = db
    .selectFrom('images')
    .select('id')
    .where('customer_id', '=', customerId)
    .where('checksum', '=', checksum)
    .orderBy('received_at')
    .orderBy('id')
    .limit(1);
  if (before) query = query.where(sql<boolean>`(received_at, id) < (${before.receivedAt}, ${before.id})`);
  return (await query.executeTakeFirst())?.id;
}

/** The first image each of these had the same bytes as (image id to the earlier image's id). */
export async function firstsWithChecksum(db: Db, rows: ImageRow[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  await Promise.all(
    rows.map(async (row) => {
      const first = await firstWithChecksum(db, row.customer_id, row.checksum, {
        receivedAt: row.received_at,
        id: row.id,
      });
      if (first) found.set(row.id, first);
    }),
  );
  return found;
}

export async function insertImage(db: Db, row: NewImage): Promise<ImageRow> {
  return db.insertInto('images').values(row).returningAll().executeTakeFirstOrThrow();
}

/** Records several landed images in one statement (a group commit's), returned in the order given. */
export async function insertImages(db: Db, rows: NewImage[]): Promise<ImageRow[]> {
  const inserted = await db.insertInto('images').values(rows).returningAll().execute();
  const byId = new Map(inserted.map((row) => [row.id, row]));
  return rows.map((row) => byId.get(row.id as string)!);
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

export async function imageExists(db: Db, id: string): Promise<boolean> {
  const row = await db.selectFrom('images').select('id').where('id', '=', id).executeTakeFirst();
  return row !== undefined;
}

/**
 * An image's job starts: received → processing, and the image as it now is. Undefined when there is
 * nothing to process: the image is gone, or has an outcome already (a job run twice). One statement
 * where a read and an update were two round trips for every image. An image already processing (its
 * last attempt's worker died) is taken as it is.
 */
export async function startProcessing(db: Db, id: string): Promise<ImageRow | undefined> {
  return db
    .updateTable('images')
    .set({ status: 'processing' })
    .where('id', '=', id)
    .where('status', 'in', ['received', 'processing'])
    .returningAll()
    .executeTakeFirst();
}

/** The attempt failed and will be retried: processing → received. */
export async function markReceived(db: Db, id: string): Promise<void> {
  await db
    .updateTable('images')
    .set({ status: 'received' })
    .where('id', '=', id)
    .where('status', '=', 'processing')
    .execute();
}

/**
 * Records an outcome (processed or failed) if none was recorded yet; false when the image already
 * had one, or is gone.
 */
export async function markOutcome(db: Db, id: string, outcome: Updateable<ImagesTable>): Promise<boolean> {
  const updated = await db
    .updateTable('images')
    .set(outcome)
    .where('id', '=', id)
    .where('status', 'in', ['received', 'processing'])
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}

/** The customer's policy "flag" caught this image as a duplicate (exact at landing, near once processed). */
export async function flagDuplicate(db: Db, id: string): Promise<void> {
  await db.updateTable('images').set({ duplicate_flagged: true }).where('id', '=', id).execute();
}

/** A reprocess failed: the error is noted beside the earlier outputs, which stay. */
export async function setMetadata(db: Db, id: string, metadata: Record<string, unknown>): Promise<void> {
  await db
    .updateTable('images')
    .set({ metadata: JSON.stringify(metadata) })
    .where('id', '=', id)
    .execute();
}

/** A reprocess succeeded: the image's processor outputs, versions and renditions after it. */
export async function setReprocessed(
  db: Db,
  id: string,
  next: { metadata: Record<string, unknown>; processors: Record<string, string>; renditions: Rendition[] },
): Promise<void> {
  await db
    .updateTable('images')
    .set({
      metadata: JSON.stringify(next.metadata),
      processors: JSON.stringify(next.processors),
      renditions: JSON.stringify(next.renditions),
    })
    .where('id', '=', id)
    .execute();
}

/** Which processed images a reprocess run covers: its customer, landed since `since`. */
export interface ReprocessScope {
  customerId?: string;
  since?: Date;
}

/** Processed images a run covers: within retention, its customer, landed since `since`. */
function inScope(db: Db, scope: ReprocessScope, now: Date, retentionMs: number) {
  let query = db
    .selectFrom('images')
    .where('status', '=', 'processed')
    .where('received_at', '>', new Date(now.getTime() - retentionMs));
  if (scope.customerId) query = query.where('customer_id', '=', scope.customerId);
  if (scope.since) query = query.where('received_at', '>=', scope.since);
  return query;
}

export async function countReprocessable(
  db: Db,
  scope: ReprocessScope,
  now: Date,
  retentionMs: number,
): Promise<number> {
  const total = await inScope(db, scope, now, retentionMs)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(total.n);
}

/** The next images a run covers after its cursor, in landing order. */
export async function nextReprocessable(
  db: Db,
  scope: ReprocessScope,
  now: Date,
  retentionMs: number,
  cursor: { receivedAt: Date | null; id: string | null },
  limit: number,
): Promise<{ id: string; received_at: Date; customer_id: string }[]> {
  let next = inScope(db, scope, now, retentionMs).select(['id', 'received_at', 'customer_id']);
  if (cursor.receivedAt && cursor.id) {
    next = next.where(sql<boolean>`(received_at, id) > (${cursor.receivedAt}, ${cursor.id})`);
  }
  return next.orderBy('received_at').orderBy('id').limit(limit).execute();
}

/** Bytes of originals held per customer, of images landed before `before` and not yet purged (usage). */
export async function heldBytesByCustomer(
  db: Db,
  before: Date,
): Promise<Array<{ customerId: string; bytes: number }>> {
  const rows = await db
    .selectFrom('images')
    .select(['customer_id', (eb) => eb.fn.sum<string>('bytes').as('bytes')])
    .where('received_at', '<', before)
    .groupBy('customer_id')
    .execute();
  return rows.map((r) => ({ customerId: r.customer_id, bytes: Number(r.bytes) }));
}

// ---- Failed images: GET /v1/failures and retries ----

/** Failed images whose outcome falls in a range, by code: how many, and the newest few of each. */
export async function failedByCode(
  db: Db,
  filter: { from: Date; to: Date; customerId?: string; code?: string },
  examples: number,
) {
  const result = await sql<{
    code: string;
    total: string;
    id: string;
    customer_id: string;
    format: string;
    error_message: string | null;
    processed_at: Date;
  }>`
    select * from (
      select error_code as code, count(*) over (partition by error_code) as total,
        row_number() over (partition by error_code order by processed_at desc, id) as n,
        id, customer_id, format, error_message, processed_at
      from images
      where status = 'failed' and processed_at >= ${filter.from} and processed_at < ${filter.to}
        ${filter.customerId ? sql`and customer_id = ${filter.customerId}` : sql``}
        ${filter.code ? sql`and error_code = ${filter.code}` : sql``}
    ) ranked where n <= ${examples}
    order by code, processed_at desc`.execute(db);
  return result.rows;
}

export interface RetryScope {
  code?: string;
  customerId?: string;
  /** Only images that failed at or after this moment. */
  since?: Date;
}

function inRetryScope(scope: RetryScope) {
  return sql<boolean>`status = 'failed'
    ${scope.code ? sql`and error_code = ${scope.code}` : sql``}
    ${scope.customerId ? sql`and customer_id = ${scope.customerId}` : sql``}
    ${scope.since ? sql`and processed_at >= ${scope.since}` : sql``}`;
}

/** Failed images in scope after the cursor, in landing order, for a bulk retry. */
export async function failedAfter(
  db: Db,
  scope: RetryScope,
  after: { receivedAt: Date; id: string } | null,
  limit: number,
): Promise<Array<{ id: string; customer_id: string; received_at: Date }>> {
  const result = await sql<{ id: string; customer_id: string; received_at: Date }>`
    select id, customer_id, received_at from images
    where ${inRetryScope(scope)}
      ${after ? sql`and (received_at, id) > (${after.receivedAt}, ${after.id}::uuid)` : sql``}
    order by received_at, id
    limit ${limit}`.execute(db);
  return result.rows;
}

/** Failed images in scope (after the cursor, when given). */
export async function countFailed(
  db: Db,
  scope: RetryScope,
  after: { receivedAt: Date; id: string } | null = null,
): Promise<number> {
  const result = await sql<{ n: string }>`
    select count(*) as n from images
    where ${inRetryScope(scope)}
      ${after ? sql`and (received_at, id) > (${after.receivedAt}, ${after.id}::uuid)` : sql``}`.execute(db);
  return Number(result.rows[0]?.n ?? 0);
}

/** A failed image goes back to received, its error cleared, to be processed again; false if it is not failed. */
export async function markForRetry(db: Db, id: string): Promise<boolean> {
  const updated = await db
    .updateTable('images')
    .set({ status: 'received', error_code: null, error_message: null, processed_at: null })
    .where('id', '=', id)
    .where('status', '=', 'failed')
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}
