import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { dayRange } from '../../analytics/range.ts';
import { CURSOR_PATTERN } from '../../catalog/images.ts';
import { failuresByCode } from '../../processing/failures.ts';
import { toImageBody } from '../../processing/image-view.ts';
import { retryImage, retryStep } from '../../processing/retry.ts';
import { customerWindow } from '../../retention/windows.ts';
import { customerScope, requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { DayRange, errorResponses, ImageBody, Matching, Text, Uuid } from '../schemas.ts';

/** An error code as the catalogue or a processor spells it. */
const Code = Matching('^[A-Za-z0-9_.:-]{1,100}$', 'must be an error code such as CORRUPT_IMAGE', {
  description: 'An error code, e.g. PROCESSOR_FAILED, UNKNOWN_CUSTOMER',
});

const Example = Type.Object({
  kind: Type.Union([Type.Literal('image'), Type.Literal('dead-letter')]),
  at: Type.String({ format: 'date-time' }),
  customerId: Type.Union([Type.String(), Type.Null()]),
  message: Type.String(),
  imageId: Type.Optional(Uuid),
  format: Type.Optional(Type.String()),
  topic: Type.Optional(Type.String()),
  partition: Type.Optional(Type.Integer()),
  offset: Type.Optional(Type.String()),
  replayedAt: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
});

/** Failures and retries: what failed, by code; retrying one image or many. */
export const failureRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const reader = requireRole(ctx.db, 'customer', 'admin');

    app.get(
      '/v1/failures',
      {
        onRequest: reader,
        schema: {
          summary:
            'Failed images and dead-lettered Kafka messages in a range, grouped by code with the newest examples (a customer sees its own)',
          tags: ['operations'],
          querystring: Type.Object({
            ...DayRange,
            customerId: Type.Optional(Uuid),
            code: Type.Optional(Code),
            examples: Type.Optional(Type.Integer({ minimum: 0, maximum: 50, default: 5 })),
          }),
          response: {
            200: Type.Object({
              from: Type.String(),
              to: Type.String(),
              totals: Type.Object({ images: Type.Integer(), deadLetters: Type.Integer() }),
              codes: Type.Array(
                Type.Object({
                  code: Type.String(),
                  images: Type.Integer(),
                  deadLetters: Type.Integer(),
                  examples: Type.Array(Example),
                }),
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        const { from, to } = dayRange(request.query, ctx.clock.now());
        const start = new Date(`${from}T00:00:00Z`);
        const end = new Date(Date.parse(`${to}T00:00:00Z`) + 86_400_000);
        const { groups, totals } = await failuresByCode(
          ctx.db,
          {
            from: start,
            to: end,
            // A customer's key sees its own failures, whatever customerId it asks for.
            customerId: customerScope(request) ?? request.query.customerId,
            code: request.query.code,
          },
          request.query.examples ?? 5,
        );
        return { from, to, totals, codes: groups };
      },
    );

    app.post(
      '/v1/images/:id/retry',
      {
        onRequest: reader,
        schema: {
          summary:
            'Process a failed image again from its stored original (e.g. once its processor is fixed); 409 NOT_FAILED if it is not failed',
          tags: ['images'],
          params: Type.Object({ id: Uuid }),
          response: { 202: ImageBody, ...errorResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        const image = await retryImage(ctx.db, request.params.id, {
          customerId: customerScope(request),
          priority: 'interactive',
          maxAttempts: ctx.config.workers.maxAttempts,
        });
        const window = await customerWindow(ctx.db, image.customer_id, ctx.config.retentionMs);
        return reply.status(202).send(toImageBody(image, window));
      },
    );

    app.post(
      '/v1/retries',
      {
        onRequest: reader,
        schema: {
          summary:
            'One step of a bulk retry of failed images (by code, customer, failed since), as bulk work: pass the cursor back until remaining is 0',
          tags: ['images', 'operations'],
          body: Type.Object(
            {
              code: Type.Optional(Code),
              customerId: Type.Optional(Uuid),
              since: Type.Optional(Type.String({ format: 'date-time', description: 'Failed at or after' })),
              cursor: Type.Optional(Matching(CURSOR_PATTERN, 'must be a cursor this route answered')),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({
              retried: Type.Integer({ description: 'Images queued again by this step' }),
              cursor: Type.Optional(Text({ description: 'Pass back to continue' })),
              remaining: Type.Integer({ description: 'Failed images in scope after the cursor' }),
              outstanding: Type.Integer({
                description:
                  'Bulk jobs in scope waiting or running; a step queues more only while under the window',
              }),
            }),
            ...errorResponses(400, 401, 403, 413),
          },
        },
      },
      async (request) => {
        const { code, since, cursor, limit } = request.body;
        return retryStep(
          ctx.db,
          {
            code,
            customerId: customerScope(request) ?? request.body.customerId,
            since: since ? new Date(since) : undefined,
          },
          cursor,
          {
            limit: limit ?? 100,
            // The reprocess runs' window bounds bulk retries too: uploads never wait behind either.
            window: ctx.config.workers.reprocessWindow,
            maxAttempts: ctx.config.workers.maxAttempts,
          },
        );
      },
    );
  };
