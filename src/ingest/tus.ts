import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EVENTS, Server } from '@tus/server';
import type { Locker, Upload } from '@tus/utils';
import type { Logger } from 'pino';
import type { Db } from '../catalog/database.ts';
import { getImage } from '../catalog/images.ts';
import type { ImageRow, JobPriority } from '../catalog/schema.ts';
import { deleteTusUpload, getTusUpload, markTusLanded, openTusUpload } from '../catalog/tus-uploads.ts';
import { isCatalogUnavailable } from '../catalog/unavailable.ts';
import type { Clock } from '../clock.ts';
import { AppError, isAppError } from '../errors.ts';
import { tusBytesKey, tusKeyPrefix } from '../lake/object-keys.ts';
import type { Lake } from '../lake/port.ts';
import type { CustomerLimits } from './customer-limits.ts';
import type { Lander } from './land.ts';
import type { TusStorage } from './tus-store.ts';

export const TUS_PATH = '/v1/tus';
/** Headers a browser may read from the answers (CORS), besides the protocol's own. */
export const TUS_EXPOSED_HEADERS = [
  'Upload-Expires',
  'Imagelake-Image-Id',
  'Imagelake-Checksum',
  'Idempotent-Replayed',
];
const ID = /^[0-9a-f]{32}$/;

export interface TusDeps {
  db: Db;
  lake: Lake;
  clock: Clock;
  log: Logger;
  lander: Lander;
  customerLimits: CustomerLimits;
  storage: TusStorage;
  locker: Locker;
  limits: {
    /** IMAGELAKE_MAX_BYTES: Tus-Max-Size. */
    maxBytes: number;
    /** Unfinished uploads per customer, and the bytes they may announce (as for direct uploads). */
    open: number;
    openBytes: number;
  };
  expiryMs: number;
  /** Browser origins allowed (IMAGELAKE_CORS_ORIGINS): ['*'] for any, [] for none. */
  corsOrigins: string[];
}

/** What a request on an upload answers without the tus server: an upload that has landed. */
export interface LandedAnswer {
  status: number;
  headers: Record<string, string>;
}

/** Refusals at landing that the same bytes would meet again: the upload and its bytes are dropped. */
const PERMANENT = new Set(['IMAGE_TOO_LARGE', 'UNSUPPORTED_FORMAT', 'EMPTY_BODY', 'IDEMPOTENCY_KEY_REUSED']);

/**
 * Resumable uploads (tus 1.0.0: creation, creation-with-upload, termination, expiration), served by
 * @tus/server over the lake's tus/ folder. Who owns an upload, until when it may be resumed and which
 * image it became are rows of `tus_uploads`, so every api process answers the same. When the last
 * byte arrives the upload lands through the Lander like any other image, and its tus objects go.
 */
export class TusUploads {
  readonly server: Server;
  private readonly deps: TusDeps;
  /** The customer each request acts for, set by the route once its key is checked. */
  private readonly callers = new WeakMap<IncomingMessage, string>();

  constructor(deps: TusDeps) {
    this.deps = deps;
    const { storage } = deps;
    const anyOrigin = deps.corsOrigins.includes('*');
    this.server = new Server({
      path: TUS_PATH,
      datastore: storage.datastore,
      locker: deps.locker,
      maxSize: deps.limits.maxBytes,
      respectForwardedHeaders: true,
      // undefined answers any origin with '*'; an empty list answers none.
      ...(anyOrigin ? {} : { allowedOrigins: deps.corsOrigins }),
      allowedHeaders: ['Imagelake-Priority'],
      exposedHeaders: TUS_EXPOSED_HEADERS,
      disableTerminationForFinishedUploads: true,
      namingFunction: () => storage.storeId(randomUUID().replaceAll('-', '')),
      // The store's id may carry the lake's folder (S3); the URL carries only the upload's own id.
      generateUrl: (_req, { proto, host, path, id }) => `${proto}://${host}${path}/${publicId(id)}`,
      getFileIdFromRequest: (_req, lastPath) =>
        lastPath && ID.test(lastPath) ? storage.storeId(lastPath) : undefined,
      onUploadCreate: (req, upload) => tusErrors(() => this.create(req, upload)),
      onUploadFinish: (req, upload) => tusErrors(() => this.finish(this.caller(req), publicId(upload.id))),
      onResponseError: async (_req, error) => this.mapError(error),
    });
    // The tus objects of a landed upload go once its answer is sent: the server still reads the
    // upload after the finishing hook (for Upload-Expires). Left behind by a crash, the purge takes them.
    this.server.on(EVENTS.POST_FINISH, (_req: unknown, _res: unknown, upload: Upload) => {
      this.deleteObjects(publicId(upload.id)).catch((error) =>
        deps.log.error({ err: error, upload: upload.id }, 'a landed upload kept its tus objects'),
      );
    });
    this.server.on(EVENTS.POST_TERMINATE, (_req: unknown, _res: unknown, id: string) => {
      this.forget(publicId(id)).catch((error) =>
        deps.log.error({ err: error, upload: id }, 'a terminated upload could not be cleaned up'),
      );
    });
  }

  /** Hands a request to the tus server, on behalf of `customerId` (undefined for OPTIONS). */
  async handle(req: IncomingMessage, res: ServerResponse, customerId: string | undefined): Promise<void> {
    if (customerId) this.callers.set(req, customerId);
    await this.server.handle(req, res);
  }

  /**
   * Checks, before the tus server sees it, a request on an existing upload: it must be the caller's
   * own (another customer's is 404, as if it did not exist), and not expired. An upload that has
   * landed is answered here from its row (its tus objects are gone): HEAD keeps answering its image
   * id. One that is complete but not landed (its api process died between the last byte and the
   * landing, or the landing was refused for a reason that passes, such as a full queue) lands now.
   */
  async before(customerId: string, method: string, id: string): Promise<LandedAnswer | undefined> {
    if (!ID.test(id)) throw new AppError('TUS_UPLOAD_NOT_FOUND');
    const row = await getTusUpload(this.deps.db, id);
    if (!row || row.customer_id !== customerId) throw new AppError('TUS_UPLOAD_NOT_FOUND');
    if (row.image_id) {
      if (method === 'DELETE') throw new AppError('TUS_UPLOAD_LANDED');
      return landedAnswer(method, row, await this.imageOf(row));
    }
    if (row.expires_at.getTime() < this.deps.clock.now().getTime()) throw new AppError('TUS_UPLOAD_EXPIRED');
    if (method === 'HEAD') {
      const upload = await this.deps.storage.datastore
        .getUpload(this.deps.storage.storeId(id))
        .catch(() => undefined);
      if (upload && upload.size !== undefined && upload.offset === upload.size) {
        await this.finish(customerId, id);
        await this.deleteObjects(id);
        const landed = await getTusUpload(this.deps.db, id);
        if (landed?.image_id) return landedAnswer(method, landed, await this.imageOf(landed));
      }
    }
    return undefined;
  }

  private caller(req: Request): string {
    const node = (req as { runtime?: { node?: { req?: IncomingMessage } } }).runtime?.node?.req;
    const customerId = node ? this.callers.get(node) : undefined;
    if (!customerId) throw new AppError('UNAUTHORIZED');
    return customerId;
  }

  /**
   * A new upload: its metadata checked, the customer's limits applied (rate, queue share, quota,
   * open uploads and the bytes they announce) before any byte is taken, then its row recorded.
   */
  private async create(req: Request, upload: Upload): Promise<{ metadata?: Upload['metadata'] }> {
    const { deps } = this;
    const customerId = this.caller(req);
    const size = upload.size;
    if (size === undefined)
      throw new AppError(
        'VALIDATION_FAILED',
        'Send Upload-Length: the length must be known when an upload starts.',
      );
    if (size === 0) throw new AppError('EMPTY_BODY');
    const metadata = upload.metadata ?? {};
    const filename = text(metadata.filename ?? metadata.name, 'filename');
    const contentType = text(metadata.contentType ?? metadata.filetype ?? metadata.type, 'contentType');
    const idempotencyKey = text(metadata.idempotencyKey, 'idempotencyKey');
    const priorityHeader = req.headers.get('imagelake-priority');
    if (priorityHeader && priorityHeader !== 'bulk' && priorityHeader !== 'interactive')
      throw new AppError('VALIDATION_FAILED', 'Imagelake-Priority is interactive or bulk.');
    await deps.customerLimits.admit(customerId, {});
    await deps.lander.admit(customerId);
    const now = deps.clock.now();
    const refused = await openTusUpload(
      deps.db,
      {
        id: publicId(upload.id),
        customerId,
        size,
        filename: filename ?? null,
        contentType: contentType ?? null,
        idempotencyKey: idempotencyKey ?? null,
        priority: (priorityHeader as JobPriority | null) ?? 'interactive',
        createdAt: now,
        expiresAt: new Date(now.getTime() + deps.expiryMs),
      },
      { maxOpen: deps.limits.open, maxBytes: deps.limits.openBytes },
    );
    if (refused)
      throw new AppError(
        'UPLOAD_LIMIT',
        `${refused.open} resumable uploads are unfinished, announcing ${refused.bytes} bytes; the limits are ${deps.limits.open} uploads and ${deps.limits.openBytes} bytes (IMAGELAKE_UPLOAD_SESSIONS, IMAGELAKE_UPLOAD_STAGED_BYTES). Finish or terminate some.`,
      );
    return {};
  }

  /**
   * Lands a complete upload through the Lander (sniff, limits, SHA-256, row and job in one
   * transaction); its tus objects are the caller's to delete once it has answered. Landing twice answers with the same image: the
   * landing's idempotency key is the customer's, or the upload's own.
   */
  async finish(
    customerId: string,
    id: string,
  ): Promise<{ headers: Record<string, string>; status_code?: number }> {
    const { db, lake, lander, customerLimits } = this.deps;
    const row = await getTusUpload(db, id);
    if (!row || row.customer_id !== customerId) throw new AppError('TUS_UPLOAD_NOT_FOUND');
    let image = row.image_id ? await getImage(db, row.image_id, customerId) : undefined;
    let duplicate = false;
    if (!image) {
      const landed = await lander
        .land({
          customerId,
          source: 'http',
          body: await lake.get(tusBytesKey(id)),
          idempotencyKey: row.idempotency_key ?? `tus:${id}`,
          filename: row.filename ?? undefined,
          priority: row.priority,
        })
        .catch(async (error) => {
          // Bytes that can never land go now, with their upload: nothing is left to resume.
          if (isAppError(error) && PERMANENT.has(error.code)) await this.forget(id);
          throw error;
        });
      image = landed.image;
      duplicate = landed.duplicate;
      await markTusLanded(db, id, image.id);
      if (!landed.duplicate) await customerLimits.chargeBytes(customerId, Number(image.bytes));
    }
    // As for POST /v1/images: an idempotency key seen before answers with the image it landed.
    return { headers: { ...imageHeaders(image), ...(duplicate ? { 'Idempotent-Replayed': 'true' } : {}) } };
  }

  /** Deletes an upload's tus objects and its row (terminated, or refused for good). */
  private async forget(id: string): Promise<void> {
    await this.deleteObjects(id);
    await deleteTusUpload(this.deps.db, id);
  }

  private async deleteObjects(id: string): Promise<void> {
    const keys: string[] = [];
    for await (const object of this.deps.lake.list(tusKeyPrefix(id))) keys.push(object.key);
    if (keys.length) await this.deps.lake.deleteMany(keys);
  }

  private async imageOf(row: { image_id: string | null; customer_id: string }) {
    return row.image_id ? getImage(this.deps.db, row.image_id, row.customer_id) : undefined;
  }

  /**
   * Our refusals answer with their code, as everywhere in the API; the server's own answers stay as
   * they are, except that nothing is ever a 500: a lock still held elsewhere is 423 (clients retry
   * it), and a failure of the lake or catalog is 503.
   */
  private mapError(error: Error | { status_code: number; body: string }) {
    if (isAppError(error)) return tusError(error);
    const status = (error as { status_code?: number }).status_code;
    if (status === 500 && (error as { body?: string }).body?.includes('lock'))
      return tusError(new AppError('TUS_UPLOAD_BUSY'));
    if (status !== undefined && status !== 500) return undefined;
    this.deps.log.error({ err: error }, 'a resumable upload request failed');
    return tusError(new AppError(isCatalogUnavailable(error) ? 'CATALOG_UNAVAILABLE' : 'LAKE_UNAVAILABLE'));
  }
}

/** The URL's id of an upload from the store's id (which may start with the lake's folders). */
function publicId(storeId: string): string {
  return storeId.slice(storeId.lastIndexOf('/') + 1);
}

/** A metadata value kept as catalog text: at most 255 characters, no control characters. */
function text(value: string | null | undefined, name: string): string | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (value.length > 255 || /[\u0000-\u001f\u007f]/.test(value))
    throw new AppError(
      'VALIDATION_FAILED',
      `Upload-Metadata ${name} must be at most 255 characters, without control characters.`,
    );
  return value;
}

function imageHeaders(image: ImageRow): Record<string, string> {
  return { 'Imagelake-Image-Id': image.id, 'Imagelake-Checksum': image.checksum };
}

function landedAnswer(method: string, row: { size: string }, image: ImageRow | undefined): LandedAnswer {
  if (!image) throw new AppError('TUS_UPLOAD_NOT_FOUND', 'Its image has been deleted since.');
  return {
    // A PATCH repeated after its answer was lost gets the final answer again.
    status: method === 'HEAD' ? 200 : 204,
    headers: {
      'Tus-Resumable': '1.0.0',
      'Upload-Offset': row.size,
      'Upload-Length': row.size,
      'Cache-Control': 'no-store',
      ...imageHeaders(image),
    },
  };
}

function tusError(error: AppError): { status_code: number; body: string } {
  return {
    status_code: error.status,
    body: JSON.stringify({ error: { code: error.code, message: error.message } }),
  };
}

/** The tus server answers a hook's thrown { status_code, body } as is; ours become that. */
async function tusErrors<T>(hook: () => Promise<T>): Promise<T> {
  try {
    return await hook();
  } catch (error) {
    throw isAppError(error) ? tusError(error) : error;
  }
}
