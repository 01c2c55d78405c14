import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Db } from '../catalog/database.ts';
import { getImage } from '../catalog/images.ts';
import type { ImageRow } from '../catalog/schema.ts';
import type { Clock } from '../clock.ts';
import { AppError } from '../errors.ts';
import type { Lake } from '../lake/port.ts';
import type { Lander } from './land.ts';

/** How long an upload session waits for its bytes and its completion. */
export const UPLOAD_TTL_MS = 24 * 3_600_000;
export const STAGING_PREFIX = 'uploads/';

export interface UploadSession {
  id: string;
  /** Where to PUT the bytes: the bucket itself when the lake can presign, else this API. */
  uploadUrl: string;
  method: 'PUT';
  /** Whether the upload URL needs the customer's Authorization header (the API) or not (presigned). */
  authorization: 'bearer' | 'none';
  expiresAt: string;
}

/**
 * Direct uploads, for images too large to pass comfortably through an API process: the client
 * PUTs the bytes to a staging key (straight into the bucket by a presigned URL on S3), then
 * completes the upload, which lands it like any other: sniffed, size-checked, hashed, recorded.
 */
export class Uploads {
  private readonly deps: { db: Db; lake: Lake; clock: Clock; lander: Lander };

  constructor(deps: { db: Db; lake: Lake; clock: Clock; lander: Lander }) {
    this.deps = deps;
  }

  async start(customerId: string, filename: string | undefined, apiBase: string): Promise<UploadSession> {
    const { db, lake, clock } = this.deps;
    const id = randomUUID();
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + UPLOAD_TTL_MS);
    const stagingKey = `${STAGING_PREFIX}${customerId}/${id}`;
    await db
      .insertInto('uploads')
      .values({
        id,
        customer_id: customerId,
        staging_key: stagingKey,
        filename: filename ?? null,
        created_at: now,
        expires_at: expiresAt,
        image_id: null,
      })
      .execute();
    const presigned = lake.presignPut ? await lake.presignPut(stagingKey, UPLOAD_TTL_MS / 1000) : undefined;
    return {
      id,
      uploadUrl: presigned ?? `${apiBase}/v1/uploads/${id}/content`,
      method: 'PUT',
      authorization: presigned ? 'none' : 'bearer',
      expiresAt: expiresAt.toISOString(),
    };
  }

  private async session(customerId: string, id: string) {
    const row = await this.deps.db
      .selectFrom('uploads')
      .selectAll()
      .where('id', '=', id)
      .where('customer_id', '=', customerId)
      .executeTakeFirst();
    if (!row || (row.image_id === null && row.expires_at.getTime() < this.deps.clock.now().getTime()))
      throw new AppError('UPLOAD_NOT_FOUND');
    return row;
  }

  /** The bytes through the API, for lakes that cannot presign (the local folder). */
  async receive(customerId: string, id: string, body: Readable): Promise<number> {
    const row = await this.session(customerId, id);
    return this.deps.lake.put(row.staging_key, body);
  }

  /** Lands the staged bytes; completing twice answers with the same image. */
  async complete(customerId: string, id: string): Promise<{ image: ImageRow; duplicate: boolean }> {
    const { db, lake, lander } = this.deps;
    const row = await this.session(customerId, id);
    if (row.image_id) {
      const image = await getImage(db, row.image_id, customerId);
      if (image) return { image, duplicate: true };
      throw new AppError('UPLOAD_NOT_FOUND', 'Its image has been deleted since.');
    }
    if (!(await lake.head(row.staging_key))) throw new AppError('UPLOAD_EMPTY');
    const landed = await lander.land({
      customerId,
      source: 'http',
      body: await lake.get(row.staging_key),
      idempotencyKey: `upload:${id}`,
      filename: row.filename ?? undefined,
    });
    await db.updateTable('uploads').set({ image_id: landed.image.id }).where('id', '=', id).execute();
    await lake.delete(row.staging_key);
    return landed;
  }
}
