import { Readable } from 'node:stream';
import multipart from '@fastify/multipart';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { CURSOR_PATTERN, decodeCursor, getImage, listImages } from '../../catalog/images.ts';
import type { ImageRow } from '../../catalog/schema.ts';
import { AppError } from '../../errors.ts';
import { guardedBody } from '../../ingest/body.ts';
import { type ImageFormat, MEDIA_TYPE } from '../../ingest/sniff.ts';
import { UploadSlots } from '../../ingest/upload-slots.ts';
import { LakeNotFound } from '../../lake/port.ts';
import { labelsOf } from '../../processing/image-record.ts';
import { eraseImages } from '../../retention/erase.ts';
import { customerWindow, customerWindows } from '../../retention/windows.ts';
import { customerScope, requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import {
  errorResponses,
  ImageBody,
  type ImageBodyT,
  LandedBody,
  Matching,
  OneOf,
  ReceiptBody,
  TEXT_PATTERN,
  Text,
  toReceiptBody,
  Uuid,
} from '../schemas.ts';

/** X-Filename is percent-encoded by clients that send non-ASCII names (headers are Latin-1). */
function decodeFilename(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let name = value;
  try {
    name = decodeURIComponent(value);
  } catch {}
  return checkFilename(name);
}

/** A filename is kept in the catalog as text: control characters (%00 decodes to NUL) are refused. */
function checkFilename(name: string | undefined): string | undefined {
  if (name && !new RegExp(TEXT_PATTERN, 'u').test(name))
    throw new AppError(
      'VALIDATION_FAILED',
      'The filename must not contain control characters (such as NUL).',
    );
  return name;
}

const Binary = Type.String({ format: 'binary', description: 'The image bytes' });

export function toImageBody(row: ImageRow, retentionMs: number): ImageBodyT {
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
    ...(row.status === 'failed' && row.error_code
      ? { error: { code: row.error_code, message: row.error_message ?? '' } }
      : {}),
  };
}

export const imageRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const reader = requireRole(ctx.db, 'customer', 'admin');

    /** The image, if the caller may see it; another customer's image is simply not found. */
    async function visibleImage(request: FastifyRequest, id: string): Promise<ImageRow> {
      const image = await getImage(ctx.db, id, customerScope(request));
      if (!image) throw new AppError('NOT_FOUND', 'No such image.');
      return image;
    }

    // Uploads in progress per customer: a customer's stalled uploads hold its own slots only.
    const slots = new UploadSlots(ctx.config.limits.concurrentUploads);
    const { bodyIdleTimeoutMs } = ctx.config.http;
    async function takeSlot(request: FastifyRequest, reply: FastifyReply): Promise<void> {
      const release = slots.take(request.principal!.customerId!);
      if (!release) {
        // Slots free as soon as any of the customer's uploads ends, so a short wait is enough.
        reply.header('retry-after', '1');
        throw new AppError(
          'TOO_MANY_UPLOADS',
          `The limit is ${ctx.config.limits.concurrentUploads} at once per customer.`,
        );
      }
      // 'close' comes once the answer is sent or the connection is gone, whichever happens first.
      reply.raw.once('close', release);
    }
    const uploader = [requireRole(ctx.db, 'customer'), takeSlot];

    // Uploads get a scope of their own: whatever the Content-Type says, the body is read as raw bytes
    // (the format is decided by the bytes), except multipart/form-data, which carries a `file` field.
    await app.register(async (upload) => {
      upload.removeAllContentTypeParsers();
      upload.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
      await upload.register(multipart, {
        limits: { files: 1, fileSize: ctx.config.limits.maxBytes + 1, fields: 10 },
      });

      upload.post(
        '/v1/images',
        {
          onRequest: uploader,
          schema: {
            summary: 'Upload an image: the raw bytes as the body, or multipart/form-data with a field "file"',
            tags: ['images'],
            consumes: ['image/*', 'application/octet-stream', 'multipart/form-data'],
            headers: Type.Object({
              'idempotency-key': Type.Optional(
                Type.String({
                  minLength: 1,
                  maxLength: 255,
                  description:
                    'The same key with the same bytes returns the first answer and lands nothing twice; with other bytes, 422 IDEMPOTENCY_KEY_REUSED',
                }),
              ),
              'x-filename': Type.Optional(
                Text({
                  maxLength: 255,
                  description: 'Percent-encoded when not ASCII; no control characters',
                }),
              ),
            }),
            response: { 202: LandedBody, ...errorResponses(400, 401, 403, 408, 413, 415, 422, 429) },
          },
        },
        async (request, reply) => {
          let body: Readable;
          let filename = decodeFilename(request.headers['x-filename'] as string | undefined);
          if (request.isMultipart()) {
            const part = await request.file();
            if (part?.fieldname !== 'file')
              throw new AppError('VALIDATION_FAILED', 'Send the image in a multipart field named "file".');
            body = guardedBody(part.file, bodyIdleTimeoutMs);
            filename = checkFilename(part.filename) || filename;
          } else {
            // Without a body no parser runs and there is no stream: the landing refuses (and counts) it.
            const raw = request.body as Readable | undefined;
            body = raw ? guardedBody(raw, bodyIdleTimeoutMs) : Readable.from([]);
          }
          const { image, duplicate } = await ctx.lander.land({
            customerId: request.principal!.customerId!,
            source: 'http',
            body,
            idempotencyKey: request.headers['idempotency-key'] as string | undefined,
            filename,
          });
          if (duplicate) reply.header('idempotent-replayed', 'true');
          reply.header('location', `/v1/images/${image.id}`);
          return reply.status(202).send({
            id: image.id,
            status: duplicate ? image.status : 'received',
            checksum: image.checksum,
            bytes: Number(image.bytes),
          });
        },
      );
      upload.put(
        '/v1/uploads/:id/content',
        {
          onRequest: uploader,
          schema: {
            summary:
              "The bytes of a direct upload, when the lake cannot take them itself (the session's uploadUrl says which)",
            tags: ['images'],
            params: Type.Object({ id: Uuid }),
            response: {
              200: Type.Object({ bytes: Type.Integer() }),
              ...errorResponses(400, 401, 403, 404, 408, 413, 429),
            },
          },
        },
        async (request) => {
          const { id } = request.params as { id: string };
          const raw = request.body as Readable | undefined;
          // Without a body there is no stream to write, and nothing must be opened for it.
          if (!raw) throw new AppError('EMPTY_BODY');
          return {
            bytes: await ctx.uploads.receive(
              request.principal!.customerId!,
              id,
              guardedBody(raw, bodyIdleTimeoutMs),
            ),
          };
        },
      );
    });

    app.post(
      '/v1/uploads',
      {
        onRequest: requireRole(ctx.db, 'customer'),
        schema: {
          summary: 'Start a direct upload: PUT the bytes to uploadUrl, then POST /v1/uploads/{id}/complete',
          tags: ['images'],
          body: Type.Optional(Type.Object({ filename: Type.Optional(Text({ maxLength: 255 })) })),
          response: {
            201: Type.Object({
              id: Uuid,
              uploadUrl: Type.String(),
              method: Type.Literal('PUT'),
              authorization: Type.String(),
              expiresAt: Type.String(),
            }),
            ...errorResponses(400, 401, 403, 413, 429),
          },
        },
      },
      async (request, reply) => {
        const base = `${request.protocol}://${request.host}`;
        return reply
          .status(201)
          .send(await ctx.uploads.start(request.principal!.customerId!, request.body?.filename, base));
      },
    );

    app.delete(
      '/v1/uploads/:id',
      {
        onRequest: requireRole(ctx.db, 'customer'),
        schema: {
          summary: 'Cancel a direct upload that will not be completed: its session and staged bytes go now',
          tags: ['images'],
          params: Type.Object({ id: Uuid }),
          response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await ctx.uploads.cancel(request.principal!.customerId!, request.params.id);
        return reply.status(204).send(null);
      },
    );

    app.post(
      '/v1/uploads/:id/complete',
      {
        onRequest: requireRole(ctx.db, 'customer'),
        schema: {
          summary: 'Land a direct upload: its size and content are checked now, like any upload',
          tags: ['images'],
          params: Type.Object({ id: Uuid }),
          response: { 202: LandedBody, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 422, 429) },
        },
      },
      async (request, reply) => {
        const { image, duplicate } = await ctx.uploads.complete(
          request.principal!.customerId!,
          request.params.id,
        );
        if (duplicate) reply.header('idempotent-replayed', 'true');
        reply.header('location', `/v1/images/${image.id}`);
        return reply
          .status(202)
          .send({ id: image.id, status: image.status, checksum: image.checksum, bytes: Number(image.bytes) });
      },
    );

    app.get(
      '/v1/images',
      {
        onRequest: reader,
        schema: {
          summary: "List the caller's images, newest first (admin: every customer's, or customerId's)",
          tags: ['images'],
          querystring: Type.Object({
            // Optional in the document; the validator fills in the default.
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
            cursor: Type.Optional(
              Matching(CURSOR_PATTERN, 'must be the "next" of a page this API returned', {
                description: 'The "next" of the page before',
              }),
            ),
            status: Type.Optional(OneOf(['received', 'processing', 'processed', 'failed'])),
            customerId: Type.Optional(Uuid),
          }),
          response: {
            200: Type.Object({
              images: Type.Array(ImageBody),
              next: Type.Union([Type.String(), Type.Null()]),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        // A customer key lists its own; an admin key every customer's, or one's with ?customerId=.
        const customerId = customerScope(request) ?? request.query.customerId;
        const cursor = request.query.cursor ? decodeCursor(request.query.cursor) : undefined;
        if (request.query.cursor && !cursor)
          throw new AppError('VALIDATION_FAILED', 'The cursor is not one this API returned.');
        const page = await listImages(ctx.db, customerId, {
          limit: request.query.limit ?? 50,
          cursor,
          status: request.query.status as string | undefined,
        });
        // Each image expires by its own customer's window, as GET /v1/images/{id} says.
        const windows = await customerWindows(
          ctx.db,
          page.rows.map((r) => r.customer_id),
          ctx.config.retentionMs,
        );
        return {
          images: page.rows.map((r) => toImageBody(r, windows.get(r.customer_id) ?? ctx.config.retentionMs)),
          next: page.next ?? null,
        };
      },
    );

    app.get(
      '/v1/images/:id',
      {
        onRequest: reader,
        schema: {
          summary: 'An image: status, metadata, renditions',
          tags: ['images'],
          params: Type.Object({ id: Uuid }),
          response: { 200: ImageBody, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const image = await visibleImage(request, request.params.id);
        return toImageBody(image, await customerWindow(ctx.db, image.customer_id, ctx.config.retentionMs));
      },
    );

    app.get(
      '/v1/images/:id/original',
      {
        onRequest: reader,
        schema: {
          summary: 'The original bytes as uploaded',
          tags: ['images'],
          params: Type.Object({ id: Uuid }),
          produces: [
            'image/jpeg',
            'image/png',
            'image/webp',
            'image/gif',
            'image/avif',
            'image/tiff',
            'image/heic',
          ],
          response: { 200: Binary, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        const image = await visibleImage(request, request.params.id);
        const stream = await ctx.lake.get(image.raw_key).catch((error) => {
          throw error instanceof LakeNotFound
            ? new AppError('NOT_FOUND', 'The original is no longer stored.')
            : error;
        });
        reply.header('content-type', MEDIA_TYPE[image.format as ImageFormat] ?? 'application/octet-stream');
        reply.header('content-length', String(image.bytes));
        reply.header('etag', `"${image.checksum}"`);
        // Images are purged at the end of their window: no cache may keep a copy past it.
        reply.header('cache-control', 'no-store');
        // The schema documents bytes; Fastify streams a Readable as is, without serializing it.
        return reply.send(stream as never);
      },
    );

    app.get(
      '/v1/images/:id/renditions/:name',
      {
        onRequest: reader,
        schema: {
          summary:
            'A rendition (thumb, preview: WebP without metadata) or an image a processor derived (PROCESSOR.NAME)',
          tags: ['images'],
          params: Type.Object({ id: Uuid, name: Type.String({ pattern: '^[a-z0-9_-]+(\\.[a-z0-9_-]+)?$' }) }),
          produces: ['image/webp', 'image/png', 'image/jpeg'],
          response: { 200: Binary, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        const image = await visibleImage(request, request.params.id);
        const rendition = (image.renditions ?? []).find((r) => r.name === request.params.name);
        if (!rendition) {
          throw new AppError(
            'NOT_FOUND',
            image.status === 'processed'
              ? 'No rendition of that name.'
              : `The image is ${image.status}; renditions exist once it is processed.`,
          );
        }
        const stream = await ctx.lake.get(rendition.key).catch((error) => {
          throw error instanceof LakeNotFound
            ? new AppError('NOT_FOUND', 'The rendition is no longer stored.')
            : error;
        });
        reply.header(
          'content-type',
          MEDIA_TYPE[rendition.format as ImageFormat] ?? 'application/octet-stream',
        );
        reply.header('content-length', String(rendition.bytes));
        // Images are purged at the end of their window: no cache may keep a copy past it.
        reply.header('cache-control', 'no-store');
        // The schema documents bytes; Fastify streams a Readable as is, without serializing it.
        return reply.send(stream as never);
      },
    );

    app.delete(
      '/v1/images/:id',
      {
        onRequest: reader,
        schema: {
          summary: 'Erase an image now, from the lake and the catalog; answers with the receipt',
          tags: ['images', 'retention'],
          params: Type.Object({ id: Uuid }),
          response: { 200: ReceiptBody, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const image = await visibleImage(request, request.params.id);
        return toReceiptBody(await eraseImages(ctx, { customerId: image.customer_id, imageId: image.id }));
      },
    );
  };
