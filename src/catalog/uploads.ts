import { sql } from 'kysely';
import type { Db } from './database.ts';

/** The `uploads` table: direct-upload sessions (ingest/uploads.ts tells how they are used). */
export interface NewSession {
  id: string;
  customerId: string;
  stagingKey: string;
  filename: string | null;
  createdAt: Date;
  expiresAt: Date;
}

/**
 * Opens a session unless the customer already has `maxOpen` open at `createdAt`: then nothing is
 * written and the number open is returned. One customer's sessions are counted and opened one at
 * a time, across every API process.
 */
export async function openSession(db: Db, session: NewSession, maxOpen: number): Promise<string | undefined> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext(${`uploads:${session.customerId}`}))`.execute(trx);
    const open = await trx
      .selectFrom('uploads')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('customer_id', '=', session.customerId)
      .where('image_id', 'is', null)
      .where('expires_at', '>', session.createdAt)
      .executeTakeFirstOrThrow();
    if (Number(open.n) >= maxOpen) return open.n;
    await trx
      .insertInto('uploads')
      .values({
        id: session.id,
        customer_id: session.customerId,
        staging_key: session.stagingKey,
        filename: session.filename,
        created_at: session.createdAt,
        expires_at: session.expiresAt,
        image_id: null,
        bytes: 0,
      })
      .execute();
    return undefined;
  });
}

export async function getSession(db: Db, customerId: string, id: string) {
  return db
    .selectFrom('uploads')
    .selectAll()
    .where('id', '=', id)
    .where('customer_id', '=', customerId)
    .executeTakeFirst();
}

/** Bytes the customer has staged in its other sessions still open at `now`. */
export async function stagedBytesElsewhere(
  db: Db,
  customerId: string,
  id: string,
  now: Date,
): Promise<string> {
  const row = await db
    .selectFrom('uploads')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<string>('bytes'), sql<string>`0`).as('n'))
    .where('customer_id', '=', customerId)
    .where('image_id', 'is', null)
    .where('expires_at', '>', now)
    .where('id', '!=', id)
    .executeTakeFirstOrThrow();
  return row.n;
}

export async function setStagedBytes(db: Db, id: string, bytes: number): Promise<void> {
  await db.updateTable('uploads').set({ bytes }).where('id', '=', id).execute();
}

export async function markCompleted(db: Db, id: string, imageId: string): Promise<void> {
  await db.updateTable('uploads').set({ image_id: imageId }).where('id', '=', id).execute();
}

export async function deleteSession(db: Db, id: string): Promise<void> {
  await db.deleteFrom('uploads').where('id', '=', id).execute();
}

/** For the purge: sessions expired uncompleted, and every session older than the retention window. */
export async function pruneSessions(db: Db, now: Date, retentionMs: number): Promise<void> {
  await db.deleteFrom('uploads').where('expires_at', '<', now).where('image_id', 'is', null).execute();
  await db
    .deleteFrom('uploads')
    .where('created_at', '<', new Date(now.getTime() - retentionMs))
    .execute();
}
