import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { CURSOR_PATTERN, decodeCursor, getImage, listImages } from '../../catalog/images.ts';
import type { ImageRow } from '../../catalog/schema.ts';
import { AppError } from '../../errors.ts';
import { type ImageFormat, MEDIA_TYPE } from '../../ingest/sniff.ts';
import { LakeNotFound } from '../../lake/port.ts';
import { toImageBody } from '../../processing/image-view.ts';
import { eraseImages } from '../../retention/erase.ts';
import { customerWindow, customerWindows } from '../../retention/windows.ts';
import { duplicateFacts } from '../../similarity/search.ts';
import { customerScope, requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import {
  errorResponses,
  Force,
  ImageBody,
  Matching,
  OneOf,
  ReceiptBody,
  toReceiptBody,
  Uuid,
} from '../schemas.ts';

const Binary = Type.String({ format: 'binary', description: 'The image bytes' });

/** The image, if the caller may see it; another customer's image is simply not found. */
export async function imageVisibleTo(
  ctx: ApiContext,
  request: FastifyRequest,
  id: string,
): Promise<ImageRow> {
  const image = await getImage(ctx.db, id, customerScope(request));
  if (!image) throw new AppError('NOT_FOUND', 'No such image.');
  return image;
}

export const imageRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const reader = requireRole(ctx.db, 'customer', 'admin');

    /** The image, if the caller may see it; another customer's image is simply not found. */
    const visibleImage = (request: FastifyRequest, id: string) => imageVisibleTo(ctx, request, id);

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
        const duplicates = await duplicateFacts(ctx.db, page.rows, ctx.config.nearDistance);
        return {
          images: page.rows.map((r) =>
            toImageBody(r, windows.get(r.customer_id) ?? ctx.config.retentionMs, duplicates.get(r.id)),
          ),
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
        const duplicates = await duplicateFacts(ctx.db, [image], ctx.config.nearDistance);
        const body = toImageBody(
          image,
          await customerWindow(ctx.db, image.customer_id, ctx.config.retentionMs),
          duplicates.get(image.id),
        );
        // For the operator who follows an image to its trace; a customer's key never sees it.
        if (image.trace_id && request.principal?.role === 'admin') body.traceId = image.trace_id;
        return body;
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
          summary:
            'Erase an image now, from the lake and the catalog; answers with the receipt (409 LEGAL_HOLD when it is under a legal hold, unless an admin gives force=true)',
          tags: ['images', 'retention'],
          params: Type.Object({ id: Uuid }),
          querystring: Force,
          response: { 200: ReceiptBody, ...errorResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const image = await visibleImage(request, request.params.id);
        if (request.query.force && request.principal?.role !== 'admin')
          throw new AppError('FORBIDDEN', 'Only an admin key may erase an image under a legal hold (force).');
        return toReceiptBody(
          await eraseImages(
            ctx,
            { customerId: image.customer_id, imageId: image.id },
            { force: request.query.force },
          ),
        );
      },
    );
  };
