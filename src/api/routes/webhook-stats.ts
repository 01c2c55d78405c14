import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { dayRange } from '../../analytics/range.ts';
import { outcomesByCustomer } from '../../catalog/webhook-deliveries.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { Day, errorResponses, Uuid } from '../schemas.ts';

/** The most customers the panel shows: those with the most deliveries. */
const TOP = 50;

export const webhookStatsRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    app.get(
      '/v1/analytics/webhooks',
      {
        onRequest: requireRole(ctx.db, 'analyst', 'admin'),
        schema: {
          summary: `Webhook delivery success per customer (the ${TOP} with the most deliveries written in the range)`,
          tags: ['analytics', 'webhooks'],
          querystring: Type.Object({
            from: Type.Optional(Day({ description: 'First day, inclusive (default: 29 days before "to")' })),
            to: Type.Optional(Day({ description: 'Last day, inclusive (default: today)' })),
            customerId: Type.Optional(Uuid),
          }),
          response: {
            200: Type.Object({
              from: Type.String(),
              to: Type.String(),
              customers: Type.Array(
                Type.Object({
                  customerId: Uuid,
                  delivered: Type.Integer(),
                  failed: Type.Integer({ description: 'Given up, or failed when the endpoint was disabled' }),
                  pending: Type.Integer({ description: 'Not delivered yet: due, or waiting for a retry' }),
                }),
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        const { from, to } = dayRange(request.query, ctx.clock.now());
        const rows = await outcomesByCustomer(ctx.db, {
          from: new Date(`${from}T00:00:00Z`),
          to: new Date(Date.parse(`${to}T00:00:00Z`) + 86_400_000),
          customerId: request.query.customerId,
          limit: TOP,
        });
        return {
          from,
          to,
          customers: rows.map((r) => ({
            customerId: r.customer_id,
            delivered: Number(r.delivered),
            failed: Number(r.failed),
            pending: Number(r.pending),
          })),
        };
      },
    );
  };
