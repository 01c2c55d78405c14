import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { getHold, type HoldRow, listHolds } from '../../catalog/holds.ts';
import { AppError } from '../../errors.ts';
import { placeHold, releaseHold } from '../../retention/holds.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, Text, Uuid } from '../schemas.ts';

const Reason = Text({ minLength: 1, maxLength: 2000, pattern: '\\S' });

const HoldBody = Type.Object(
  {
    id: Uuid,
    customerId: Type.Union([Uuid, Type.Null()], {
      description: 'The customer held (all its images, when imageIds is null), or whose images are held',
    }),
    imageIds: Type.Union([Type.Array(Uuid), Type.Null()], { description: 'Exactly these images, when set' }),
    reason: Type.String(),
    until: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: 'Expected end; the hold stays until released, and the audit flags it once past',
    }),
    active: Type.Boolean(),
    createdAt: Type.String({ format: 'date-time' }),
    releasedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    releaseReason: Type.Union([Type.String(), Type.Null()]),
    receiptSeq: Type.Optional(
      Type.Integer({ description: 'The receipt of this placing or release in the chain' }),
    ),
  },
  { $id: 'Hold' },
);

function toHoldBody(hold: HoldRow, receiptSeq?: number) {
  return {
    id: hold.id,
    customerId: hold.customer_id,
    imageIds: hold.image_ids,
    reason: hold.reason,
    until: hold.until?.toISOString() ?? null,
    active: hold.released_at === null,
    createdAt: hold.created_at.toISOString(),
    releasedAt: hold.released_at?.toISOString() ?? null,
    releaseReason: hold.release_reason,
    ...(receiptSeq === undefined ? {} : { receiptSeq }),
  };
}

/** Legal holds (admin): routes translate; the workflow is retention/holds.ts. */
export const holdRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const admin = requireRole(ctx.db, 'admin');
    app.addSchema(HoldBody);

    app.post(
      '/v1/holds',
      {
        onRequest: admin,
        schema: {
          summary:
            "Place a legal hold: a customer's images (all, also those landing later) or some images are kept past their window until released",
          tags: ['retention'],
          body: Type.Object(
            {
              customerId: Type.Optional(Uuid),
              imageIds: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: 1000 })),
              reason: Reason,
              until: Type.Optional(Type.String({ format: 'date-time' })),
            },
            { additionalProperties: false },
          ),
          response: { 201: Type.Ref('Hold'), ...errorResponses(400, 401, 403, 404, 413) },
        },
      },
      async (request, reply) => {
        const { customerId, imageIds, reason, until } = request.body;
        const { hold, receipt } = await placeHold(ctx, {
          customerId,
          imageIds,
          reason: reason.trim(),
          until: until ? new Date(until) : undefined,
        });
        return reply.status(201).send(toHoldBody(hold, receipt.seq));
      },
    );

    app.get(
      '/v1/holds',
      {
        onRequest: admin,
        schema: {
          summary: 'Legal holds, newest first: the active ones, or all with all=true',
          tags: ['retention'],
          querystring: Type.Object({
            all: Type.Optional(Type.Boolean({ default: false, description: 'Released holds too' })),
            customerId: Type.Optional(Uuid),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
          }),
          response: {
            200: Type.Object({ holds: Type.Array(Type.Ref('Hold')) }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => ({
        holds: (
          await listHolds(ctx.db, {
            all: request.query.all ?? false,
            customerId: request.query.customerId,
            limit: request.query.limit ?? 100,
          })
        ).map((h) => toHoldBody(h)),
      }),
    );

    app.get(
      '/v1/holds/:id',
      {
        onRequest: admin,
        schema: {
          summary: 'A legal hold, active or released',
          tags: ['retention'],
          params: Type.Object({ id: Uuid }),
          response: { 200: Type.Ref('Hold'), ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const hold = await getHold(ctx.db, request.params.id);
        if (!hold) throw new AppError('NOT_FOUND', 'No such hold.');
        return toHoldBody(hold);
      },
    );

    app.delete(
      '/v1/holds/:id',
      {
        onRequest: admin,
        schema: {
          summary:
            'Release a legal hold, with a reason; its images past their window go at the next purge (unless another hold keeps them)',
          tags: ['retention'],
          params: Type.Object({ id: Uuid }),
          body: Type.Object({ reason: Reason }, { additionalProperties: false }),
          response: { 200: Type.Ref('Hold'), ...errorResponses(400, 401, 403, 404, 409, 413) },
        },
      },
      async (request) => {
        const { hold, receipt } = await releaseHold(ctx, request.params.id, request.body.reason.trim());
        return toHoldBody(hold, receipt.seq);
      },
    );
  };
