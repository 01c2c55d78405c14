import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Db } from '../../catalog/database.ts';
import { deleteEndpoint, type EndpointRow, getEndpoint, listEndpoints } from '../../catalog/webhooks.ts';
import { AppError } from '../../errors.ts';
import { changeEndpoint, registerEndpoint, rotate, sendTest } from '../../webhooks/endpoints.ts';
import { WEBHOOK_EVENTS } from '../../webhooks/events.ts';
import { customerScope, requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, OneOf, Text, Uuid } from '../schemas.ts';

const Nullable = <T extends import('@sinclair/typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Url = Type.String({
  format: 'uri',
  minLength: 1,
  maxLength: 2048,
  description: 'https:// URL to POST events to',
});
const Events = Type.Array(OneOf(WEBHOOK_EVENTS), {
  minItems: 1,
  maxItems: WEBHOOK_EVENTS.length,
  uniqueItems: true,
  description: 'The events this endpoint receives',
});
const Description = Text({ maxLength: 500 });

export const WebhookBody = Type.Object({
  id: Uuid,
  customerId: Uuid,
  url: Type.String(),
  description: Nullable(Type.String()),
  events: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  disabledReason: Nullable(
    Type.String({ description: 'Why it was disabled: 410 Gone, failing for days, or the customer' }),
  ),
  disabledAt: Nullable(Type.String({ format: 'date-time' })),
  failingSince: Nullable(
    Type.String({ format: 'date-time', description: 'First failed attempt since the last success' }),
  ),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

const WithSecret = Type.Composite([
  WebhookBody,
  Type.Object({
    secret: Type.String({ description: 'whsec_ and base64 (Standard Webhooks); shown only now' }),
  }),
]);

export function toWebhookBody(row: EndpointRow): Static<typeof WebhookBody> {
  return {
    id: row.id,
    customerId: row.customer_id,
    url: row.url,
    description: row.description,
    events: row.events,
    enabled: row.enabled,
    disabledReason: row.disabled_reason,
    disabledAt: row.disabled_at?.toISOString() ?? null,
    failingSince: row.failing_since?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** The endpoint, if the caller may see it; another customer's is simply not found. */
export async function visibleEndpoint(db: Db, request: FastifyRequest, id: string): Promise<EndpointRow> {
  const endpoint = await getEndpoint(db, id, customerScope(request));
  if (!endpoint) throw new AppError('NOT_FOUND', 'No such webhook endpoint.');
  return endpoint;
}

export const WebhookParams = Type.Object({ id: Uuid });

export const webhookRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const owner = requireRole(ctx.db, 'customer', 'admin');
    const config = ctx.config.webhooks;

    app.post(
      '/v1/webhooks',
      {
        onRequest: owner,
        schema: {
          summary: 'Register a webhook endpoint; its signing secret is shown once (admin: give customerId)',
          tags: ['webhooks'],
          body: Type.Object({
            url: Url,
            events: Events,
            description: Type.Optional(Description),
            customerId: Type.Optional(Uuid),
          }),
          response: { 201: WithSecret, ...errorResponses(400, 401, 403, 409) },
        },
      },
      async (request, reply) => {
        const own = customerScope(request);
        const customerId = own ?? request.body.customerId;
        if (!customerId)
          throw new AppError('VALIDATION_FAILED', 'An admin key registers for a customer: give customerId.');
        if (own && request.body.customerId && request.body.customerId !== own)
          throw new AppError('FORBIDDEN', 'A customer key registers endpoints for its own customer only.');
        const row = await registerEndpoint(ctx.db, config, {
          ...request.body,
          events: request.body.events as string[],
          customerId,
        });
        return reply.status(201).send({ ...toWebhookBody(row), secret: row.secret });
      },
    );

    app.get(
      '/v1/webhooks',
      {
        onRequest: owner,
        schema: {
          summary: "The caller's webhook endpoints (admin: every customer's, or customerId's)",
          tags: ['webhooks'],
          querystring: Type.Object({ customerId: Type.Optional(Uuid) }),
          response: {
            200: Type.Object({ webhooks: Type.Array(WebhookBody) }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        const rows = await listEndpoints(ctx.db, customerScope(request) ?? request.query.customerId);
        return { webhooks: rows.map(toWebhookBody) };
      },
    );

    app.get(
      '/v1/webhooks/:id',
      {
        onRequest: owner,
        schema: {
          summary: 'A webhook endpoint (without its secret)',
          tags: ['webhooks'],
          params: WebhookParams,
          response: { 200: WebhookBody, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => toWebhookBody(await visibleEndpoint(ctx.db, request, request.params.id)),
    );

    app.patch(
      '/v1/webhooks/:id',
      {
        onRequest: owner,
        schema: {
          summary:
            'Change a webhook endpoint: URL, events, description; enabled: true re-enables a disabled one',
          tags: ['webhooks'],
          params: WebhookParams,
          body: Type.Object({
            url: Type.Optional(Url),
            events: Type.Optional(Events),
            description: Type.Optional(Nullable(Description)),
            enabled: Type.Optional(Type.Boolean()),
          }),
          response: { 200: WebhookBody, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const endpoint = await visibleEndpoint(ctx.db, request, request.params.id);
        return toWebhookBody(
          await changeEndpoint(
            ctx.db,
            config,
            endpoint,
            { ...request.body, events: request.body.events as string[] | undefined },
            ctx.clock.now(),
          ),
        );
      },
    );

    app.delete(
      '/v1/webhooks/:id',
      {
        onRequest: owner,
        schema: {
          summary: 'Delete a webhook endpoint and its delivery log',
          tags: ['webhooks'],
          params: WebhookParams,
          response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        const endpoint = await visibleEndpoint(ctx.db, request, request.params.id);
        if (!(await deleteEndpoint(ctx.db, endpoint.id)))
          throw new AppError('NOT_FOUND', 'No such webhook endpoint.');
        return reply.status(204).send(null);
      },
    );

    app.post(
      '/v1/webhooks/:id/rotate-secret',
      {
        onRequest: owner,
        schema: {
          summary: 'A new signing secret, shown once; the old one also signs for 24 hours',
          tags: ['webhooks'],
          params: WebhookParams,
          response: {
            200: Type.Object({
              id: Uuid,
              secret: Type.String(),
              previousSecretExpiresAt: Type.String({ format: 'date-time' }),
            }),
            ...errorResponses(400, 401, 403, 404),
          },
        },
      },
      async (request) => {
        const endpoint = await visibleEndpoint(ctx.db, request, request.params.id);
        const { row, previousUntil } = await rotate(ctx.db, endpoint, ctx.clock.now());
        return { id: row.id, secret: row.secret, previousSecretExpiresAt: previousUntil.toISOString() };
      },
    );

    app.post(
      '/v1/webhooks/:id/test',
      {
        onRequest: owner,
        schema: {
          summary: 'Send a webhook.test event now; follow it in the delivery log',
          tags: ['webhooks'],
          params: WebhookParams,
          response: { 202: Type.Object({ deliveryId: Uuid }), ...errorResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        const endpoint = await visibleEndpoint(ctx.db, request, request.params.id);
        return reply.status(202).send({ deliveryId: await sendTest(ctx.db, endpoint, ctx.clock.now()) });
      },
    );
  };
