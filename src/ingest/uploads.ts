import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Db } from '../catalog/database.ts';
import { getImage } from '../catalog/images.ts';
import type { ImageRow, JobPriority } from '../catalog/schema.ts';
import {
  deleteSession,
  getSession,
  markCompleted,
  openSession,
  setStagedBytes,
  stagedBytesElsewhere,
} from '../catalog/uploads.ts';
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

export interface UploadLimits {
  /** The largest image (IMAGELAKE_MAX_BYTES): a PUT over it is cut off while streaming. */
  maxBytes: number;
  /** Sessions open at once per customer. */
  sessions: number;
  /** Bytes staged at once per customer, over all its open sessions. */
  stagedBytes: number;
}

export interface UploadsDeps {
  db: Db;
  lake: Lake;
  clock: Clock;
  lander: Lander;
  limits: UploadLimits;
}

/** Refusals at completion that the same bytes would meet again: the staged bytes are dropped. */
const PERMANENT = new Set(['IMAGE_TOO_LARGE', 'UNSUPPORTED_FORMAT', 'EMPTY_BODY', 'IDEMPOTENCY_KEY_REUSED']);

/**
 * Direct uploads, for images too large to pass comfortably through an API process: the client
 * PUTs the bytes to a staging key (straight into the bucket by a presigned URL on S3), then
 * completes the upload, which lands it like any other: sniffed, size-checked, hashed, recorded.
 */
export class Uploads {
  private readonly deps: UploadsDeps;

  constructor(deps: UploadsDeps) {
    this.deps = deps;
  }

  async start(customerId: string, filename: string | undefined, apiBase: string): Promise<UploadSession> {
    const { db, lake, clock, limits } = this.deps;
    const id = randomUUID();
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + UPLOAD_TTL_MS);
    const stagingKey = `${STAGING_PREFIX}${customerId}/${id}`;
    // One customer's sessions are counted and opened one at a time, across every API process.
    const open = await openSession(
      db,
      { id, customerId, stagingKey, filename: filename ?? null, createdAt: now, expiresAt },
      limits.sessions,
    );
    if (open !== undefined) {
      throw new AppError('UPLOAD_LIMIT', `${open} sessions are open; the limit is ${limits.sessions}.`);
    }
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
    const row = await getSession(this.deps.db, customerId, id);
    if (!row || (row.image_id === null && row.expires_at.getTime() < this.deps.clock.now().getTime()))
      throw new AppError('UPLOAD_NOT_FOUND');
    return row;
  }

  /**
   * The bytes through the API, for lakes that cannot presign (the local folder). They are counted
   * while they stream: past IMAGELAKE_MAX_BYTES, or past what the customer may still stage, the
   * write stops and nothing is kept.
   */
  async receive(customerId: string, id: string, body: Readable): Promise<number> {
    const { db, lake, limits } = this.deps;
    const row = await this.session(customerId, id);
    if (row.image_id) throw new AppError('UPLOAD_NOT_FOUND', 'It has been completed already.');
    const others = { n: await stagedBytesElsewhere(db, customerId, id, this.deps.clock.now()) };
    const room = limits.stagedBytes - Number(others.n);
    const tooMuch = () =>
      room < limits.maxBytes
        ? new AppError('UPLOAD_LIMIT', `${others.n} bytes are staged; the limit is ${limits.stagedBytes}.`)
        : new AppError('IMAGE_TOO_LARGE', `The limit is ${limits.maxBytes} bytes.`);
    const allowed = Math.min(room, limits.maxBytes);
    if (allowed <= 0) throw tooMuch();

    // The first bytes are awaited before anything is written, so an empty body leaves nothing behind.
    const chunks = body[Symbol.asyncIterator]();
    let first: Buffer | undefined;
    while (!first) {
      const next = await chunks.next();
      if (next.done) throw new AppError('EMPTY_BODY');
      if ((next.value as Buffer).length > 0) first = next.value as Buffer;
    }
    let bytes = 0;
    const take = (chunk: Buffer): Buffer => {
      bytes += chunk.length;
      if (bytes > allowed) throw tooMuch();
      return chunk;
    };
    async function* counted(): AsyncGenerator<Buffer> {
      yield take(first!);
      for (;;) {
        const next = await chunks.next();
        if (next.done) return;
        yield take(next.value as Buffer);
      }
    }
    const written = await lake.put(row.staging_key, Readable.from(counted()));
    await setStagedBytes(db, id, written);
    return written;
  }

  /** Drops a session that will not be completed, and its staged bytes. */
  async cancel(customerId: string, id: string): Promise<void> {
    const row = await this.session(customerId, id);
    if (row.image_id) throw new AppError('UPLOAD_NOT_FOUND', 'It has been completed already.');
    await this.deps.lake.delete(row.staging_key);
    await deleteSession(this.deps.db, id);
  }

  /** Lands the staged bytes; completing twice answers with the same image. */
  async complete(
    customerId: string,
    id: string,
    priority?: JobPriority,
  ): Promise<{ image: ImageRow; duplicate: boolean }> {
    const { db, lake, lander } = this.deps;
    const row = await this.session(customerId, id);
    if (row.image_id) {
      const image = await getImage(db, row.image_id, customerId);
      if (image) return { image, duplicate: true };
      throw new AppError('UPLOAD_NOT_FOUND', 'Its image has been deleted since.');
    }
    if (!(await lake.head(row.staging_key))) throw new AppError('UPLOAD_EMPTY');
    const landed = await lander
      .land({
        customerId,
        source: 'http',
        body: await lake.get(row.staging_key),
        idempotencyKey: `upload:${id}`,
        filename: row.filename ?? undefined,
        priority,
      })
      .catch(async (error) => {
        // Bytes that can never land would otherwise fill the staging area until the session expires.
        if (error instanceof AppError && PERMANENT.has(error.code)) {
          await lake.delete(row.staging_key);
          await setStagedBytes(db, id, 0);
        }
        throw error;
      });
    await markCompleted(db, id, landed.image.id);
    await lake.delete(row.staging_key);
    return landed;
  }
}
