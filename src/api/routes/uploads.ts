import { Readable } from 'node:stream';
import multipart from '@fastify/multipart';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { JobPriority } from '../../catalog/schema.ts';
import { AppError } from '../../errors.ts';
import { guardedBody } from '../../ingest/body.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, LandedBody, OneOf, TEXT_PATTERN, Text, Uuid } from '../schemas.ts';
import { takeUploadSlot } from '../upload-slot.ts';

/** `Imagelake-Priority: bulk` marks a backfill: processed only when no interactive work waits. */
const PriorityHeader = OneOf(['interactive', 'bulk'], {
  description:
    'bulk for a backfill: its images are processed only when no interactive work waits (default interactive)',
});

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

/**
 * Ways in for an image's bytes: `POST /v1/images` (raw or multipart) and direct uploads (a session,
 * its bytes by PUT or straight to the bucket, then complete). Each holds one of the customer's upload
 * slots while its body streams, and reads the body through the idle watchdog.
 */
export const uploadRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();

    const takeSlot = takeUploadSlot(ctx.uploadSlots, ctx.config.limits.concurrentUploads);
    const { bodyIdleTimeoutMs } = ctx.config.http;
    const uploader = [requireRole(ctx.db, 'customer'), takeSlot];
    // The customer's rate limits, shared by every api process; the answer carries their state either way.
    async function rateLimit(request: FastifyRequest, reply: FastifyReply): Promise<void> {
      const headers: Record<string, string> = {};
      try {
        await ctx.customerLimits.admit(request.principal!.customerId!, headers);
      } catch (error) {
        if (error instanceof AppError) ctx.metrics.rejected.inc({ source: 'http', code: error.code });
        throw error;
      } finally {
        reply.headers(headers);
      }
    }
    const limitedUploader = [requireRole(ctx.db, 'customer'), rateLimit, takeSlot];

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
          onRequest: limitedUploader,
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
              'imagelake-priority': Type.Optional(PriorityHeader),
            }),
            response: { 202: LandedBody, ...errorResponses(400, 401, 403, 408, 409, 413, 415, 422, 429) },
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
            priority: request.headers['imagelake-priority'] as JobPriority | undefined,
          });
          if (!duplicate) await ctx.customerLimits.chargeBytes(image.customer_id, Number(image.bytes));
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
        onRequest: [requireRole(ctx.db, 'customer'), rateLimit],
        schema: {
          summary: 'Land a direct upload: its size and content are checked now, like any upload',
          tags: ['images'],
          params: Type.Object({ id: Uuid }),
          headers: Type.Object({ 'imagelake-priority': Type.Optional(PriorityHeader) }),
          response: { 202: LandedBody, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 422, 429) },
        },
      },
      async (request, reply) => {
        const { image, duplicate } = await ctx.uploads.complete(
          request.principal!.customerId!,
          request.params.id,
          request.headers['imagelake-priority'] as JobPriority | undefined,
        );
        if (!duplicate) await ctx.customerLimits.chargeBytes(image.customer_id, Number(image.bytes));
        if (duplicate) reply.header('idempotent-replayed', 'true');
        reply.header('location', `/v1/images/${image.id}`);
        return reply
          .status(202)
          .send({ id: image.id, status: image.status, checksum: image.checksum, bytes: Number(image.bytes) });
      },
    );
  };
