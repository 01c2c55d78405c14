import { sql } from 'kysely';
import type { Db } from './database.ts';
import type { JobPriority } from './schema.ts';

/** The `tus_uploads` table: resumable uploads and their owners (ingest/tus.ts tells how they are used). */
export interface NewTusUpload {
  id: string;
  customerId: string;
  size: number;
  filename: string | null;
  contentType: string | null;
  idempotencyKey: string | null;
  priority: JobPriority;
  createdAt: Date;
  expiresAt: Date;
}

/**
 * Records a new upload unless the customer already has `maxOpen` unfinished ones, or they and this
 * one would hold more than `maxBytes`: then nothing is written and the reason is returned. One
 * customer's uploads are counted and opened one at a time, across every api process.
 */
export async function openTusUpload(
  db: Db,
  upload: NewTusUpload,
  limits: { maxOpen: number; maxBytes: number },
): Promise<{ open: number; bytes: number } | undefined> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext(${`tus:${upload.customerId}`}))`.execute(trx);
    const held = await trx
      .selectFrom('tus_uploads')
      .select((eb) => [
        eb.fn.countAll<string>().as('n'),
        eb.fn.coalesce(eb.fn.sum<string>('size'), sql<string>`0`).as('bytes'),
      ])
      .where('customer_id', '=', upload.customerId)
      .where('image_id', 'is', null)
      .where('expires_at', '>', upload.createdAt)
      .executeTakeFirstOrThrow();
    const open = Number(held.n);
    const bytes = Number(held.bytes);
    if (open >= limits.maxOpen || bytes + upload.size > limits.maxBytes) return { open, bytes };
    await trx
      .insertInto('tus_uploads')
      .values({
        id: upload.id,
        customer_id: upload.customerId,
        size: upload.size,
        filename: upload.filename,
        content_type: upload.contentType,
        idempotency_key: upload.idempotencyKey,
        priority: upload.priority,
        created_at: upload.createdAt,
        expires_at: upload.expiresAt,
        image_id: null,
      })
      .execute();
    return undefined;
  });
}

export async function getTusUpload(db: Db, id: string) {
  return db.selectFrom('tus_uploads').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function markTusLanded(db: Db, id: string, imageId: string): Promise<void> {
  await db.updateTable('tus_uploads').set({ image_id: imageId }).where('id', '=', id).execute();
}

export async function deleteTusUpload(db: Db, id: string): Promise<void> {
  await db.deleteFrom('tus_uploads').where('id', '=', id).execute();
}

/** Unfinished uploads past their expiry, oldest first: the purge deletes their bytes, then their rows. */
export async function expiredTusUploads(db: Db, now: Date, limit: number) {
  return db
    .selectFrom('tus_uploads')
    .select(['id', 'customer_id', 'expires_at'])
    .where('image_id', 'is', null)
    .where('expires_at', '<', now)
    .orderBy('expires_at')
    .limit(limit)
    .execute();
}

/** The rows of the given uploads, for the audit's check of the lake's tus/ area. */
export async function tusUploadsByIds(db: Db, ids: string[]) {
  if (ids.length === 0) return [];
  return db
    .selectFrom('tus_uploads')
    .select(['id', 'expires_at', 'image_id'])
    .where('id', 'in', ids)
    .execute();
}

/** For the purge: landed uploads older than the retention window (their images are gone by then). */
export async function pruneLandedTusUploads(db: Db, now: Date, retentionMs: number): Promise<void> {
  await db
    .deleteFrom('tus_uploads')
    .where('image_id', 'is not', null)
    .where('created_at', '<', new Date(now.getTime() - retentionMs))
    .execute();
}
