import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { DeliveryStatus } from '../../catalog/schema.ts';
import {
  DELIVERY_CURSOR_PATTERN,
  type DeliveryRow,
  decodeDeliveryCursor,
  getDelivery,
  listDeliveries,
  replay,
} from '../../catalog/webhook-deliveries.ts';
import { AppError } from '../../errors.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, Matching, OneOf, Uuid } from '../schemas.ts';
import { visibleEndpoint, WebhookParams } from './webhooks.ts';

const Nullable = <T extends import('@sinclair/typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const STATUSES = ['pending', 'delivered', 'failed'] as const;

const AttemptBody = Type.Object({
  at: Type.String({ format: 'date-time' }),
  statusCode: Nullable(Type.Integer({ description: "The receiver's HTTP status; null when none came" })),
  error: Nullable(Type.String()),
  latencyMs: Type.Integer(),
});

const DeliveryBody = Type.Object({
  id: Uuid,
  webhookId: Uuid,
  messageId: Type.String({ description: 'The webhook-id header of every attempt: receivers dedupe on it' }),
  eventType: Type.String(),
  status: OneOf(STATUSES),
  attempts: Type.Integer(),
  nextAttemptAt: Nullable(Type.String({ format: 'date-time' })),
  lastStatusCode: Nullable(Type.Integer()),
  lastError: Nullable(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  deliveredAt: Nullable(Type.String({ format: 'date-time' })),
  payload: Type.Record(Type.String(), Type.Unknown(), { description: 'The body every attempt sends' }),
  attemptLog: Type.Array(AttemptBody),
});

/** A date-time the schema admitted, as a Date; one JavaScript cannot read (a leap second) is refused. */
function moment(value: string, name: string): Date {
  const at = new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new AppError('VALIDATION_FAILED', `${name} is not a time this API can read.`);
  return at;
}

function toDeliveryBody(row: DeliveryRow): Static<typeof DeliveryBody> {
  return {
    id: row.id,
    webhookId: row.endpoint_id,
    messageId: row.id,
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.status === 'pending' ? (row.next_attempt_at?.toISOString() ?? null) : null,
    lastStatusCode: row.last_status,
    lastError: row.last_error,
    createdAt: row.created_at.toISOString(),
    deliveredAt: row.delivered_at?.toISOString() ?? null,
    payload: JSON.parse(row.payload) as Record<string, unknown>,
    attemptLog: row.attempt_log,
  };
}

export const webhookDeliveryRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const owner = requireRole(ctx.db, 'customer', 'admin');

    app.get(
      '/v1/webhooks/:id/deliveries',
      {
        onRequest: owner,
        schema: {
          summary:
            "An endpoint's delivery log, oldest first: each delivery with its attempts and the next one",
          tags: ['webhooks'],
          params: WebhookParams,
          querystring: Type.Object({
            status: Type.Optional(OneOf(STATUSES)),
            from: Type.Optional(Type.String({ format: 'date-time', description: 'Written at or after' })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
            cursor: Type.Optional(
              Matching(DELIVERY_CURSOR_PATTERN, 'must be the "next" of a page this API returned', {
                description: 'The "next" of the page before',
              }),
            ),
          }),
          response: {
            200: Type.Object({ deliveries: Type.Array(DeliveryBody), next: Nullable(Type.String()) }),
            ...errorResponses(400, 401, 403, 404),
          },
        },
      },
      async (request) => {
        const endpoint = await visibleEndpoint(ctx.db, request, request.params.id);
        const { status, from, limit, cursor } = request.query;
        const after = cursor ? decodeDeliveryCursor(cursor) : undefined;
        if (cursor && !after)
          throw new AppError('VALIDATION_FAILED', 'The cursor is not one this API returned.');
        const page = await listDeliveries(ctx.db, endpoint.id, {
          ...(status ? { status: status as DeliveryStatus } : {}),
          ...(from ? { from: moment(from, 'from') } : {}),
          ...(after ? { after } : {}),
          limit: limit ?? 50,
        });
        return { deliveries: page.rows.map(toDeliveryBody), next: page.next ?? null };
      },
    );

    app.post(
      '/v1/webhooks/:id/deliveries/:deliveryId/replay',
      {
        onRequest: owner,
        schema: {
          summary:
            'Send one delivery again now, with the same webhook-id, from the start of the retry schedule',
          tags: ['webhooks'],
          params: Type.Object({ id: Uuid, deliveryId: Uuid }),
          response: { 202: DeliveryBody, ...errorResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        const endpoint = await visibleEndpoint(ctx.db, request, request.params.id);
        if (!endpoint.enabled) throw new AppError('WEBHOOK_DISABLED');
        await replay(ctx.db, endpoint.id, { id: request.params.deliveryId }, ctx.clock.now());
        const row = await getDelivery(ctx.db, endpoint.id, request.params.deliveryId);
        if (!row) throw new AppError('NOT_FOUND', 'No such delivery for this endpoint.');
        return reply.status(202).send(toDeliveryBody(row));
      },
    );

    app.post(
      '/v1/webhooks/:id/replay',
      {
        onRequest: owner,
        schema: {
          summary: 'Send again every delivery of a status (failed by default) written in [from, to)',
          tags: ['webhooks'],
          params: WebhookParams,
          body: Type.Object({
            from: Type.String({ format: 'date-time' }),
            to: Type.String({ format: 'date-time' }),
            status: Type.Optional(OneOf(['failed', 'delivered'] as const)),
          }),
          response: {
            202: Type.Object({ replayed: Type.Integer({ description: 'Deliveries due again now' }) }),
            ...errorResponses(400, 401, 403, 404, 409),
          },
        },
      },
      async (request, reply) => {
        const endpoint = await visibleEndpoint(ctx.db, request, request.params.id);
        if (!endpoint.enabled) throw new AppError('WEBHOOK_DISABLED');
        const { from, to, status } = request.body;
        const replayed = await replay(
          ctx.db,
          endpoint.id,
          {
            from: moment(from, 'from'),
            to: moment(to, 'to'),
            status: (status ?? 'failed') as DeliveryStatus,
          },
          ctx.clock.now(),
        );
        return reply.status(202).send({ replayed });
      },
    );
  };
