import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { dayRange } from '../../analytics/range.ts';
import { csvCell } from '../../analytics/sql.ts';
import { type UsageRow, usageBetween } from '../../analytics/usage.ts';
import { queueByPriority, topWaitingCustomers } from '../../catalog/queue.ts';
import { customerScope, requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { DayRange, errorResponses, jsonOrCsv, OneOf, Uuid, wantsCsv } from '../schemas.ts';

const UsageBody = Type.Object({
  day: Type.String(),
  customerId: Type.String(),
  imagesReceived: Type.Integer(),
  bytesReceived: Type.Integer(),
  imagesProcessed: Type.Integer(),
  imagesFailed: Type.Integer(),
  processingMs: Type.Integer(),
  cpuSeconds: Type.Number(),
  processorMs: Type.Record(Type.String(), Type.Number()),
  bytesHeld: Type.Union([Type.Integer(), Type.Null()]),
});

const CSV_COLUMNS = [
  'day',
  'customerId',
  'imagesReceived',
  'bytesReceived',
  'imagesProcessed',
  'imagesFailed',
  'processingMs',
  'cpuSeconds',
  'bytesHeld',
  'processorMs',
] as const;

/** Usage as CSV, one row per customer per day; processorMs is a JSON object in its cell. */
export function usageCsv(rows: UsageRow[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const row of rows) lines.push(CSV_COLUMNS.map((c) => csvCell(row[c])).join(','));
  return `${lines.join('\n')}\n`;
}

export const usageRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    app.get(
      '/v1/usage',
      {
        onRequest: requireRole(ctx.db, 'admin', 'analyst', 'customer'),
        schema: {
          summary:
            'Usage for billing per customer per day: images received, processed, failed; bytes received and held; processing time (customers see their own)',
          tags: ['statistics'],
          querystring: Type.Object({
            ...DayRange,
            customerId: Type.Optional(Uuid),
            format: Type.Optional(OneOf(['json', 'csv'])),
          }),
          response: {
            200: jsonOrCsv(
              Type.Object({
                from: Type.String(),
                to: Type.String(),
                rows: Type.Array(UsageBody),
              }),
            ),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request, reply) => {
        const { from, to } = dayRange(request.query, ctx.clock.now());
        // A customer's key sees its own usage, whatever customerId it asks for.
        const customerId = customerScope(request) ?? request.query.customerId;
        const rows = await usageBetween(ctx.db, { from, to, customerId });
        if (wantsCsv(request.query.format, request.headers.accept)) {
          reply.header('content-type', 'text/csv; charset=utf-8');
          return reply.send(usageCsv(rows));
        }
        reply.header('content-type', 'application/json; charset=utf-8');
        return reply.send({ from, to, rows });
      },
    );

    app.get(
      '/v1/queue',
      {
        onRequest: requireRole(ctx.db, 'admin'),
        schema: {
          summary:
            'The processing queue: waiting and in-flight jobs by priority, and the customers with the most waiting',
          tags: ['operations'],
          querystring: Type.Object({
            top: Type.Optional(
              Type.Integer({ minimum: 1, maximum: 100, description: 'Customers listed (default 10)' }),
            ),
          }),
          response: {
            200: Type.Object({
              priorities: Type.Array(
                Type.Object({
                  priority: Type.String(),
                  waiting: Type.Integer(),
                  inFlight: Type.Integer(),
                  oldestWaitSeconds: Type.Union([Type.Number(), Type.Null()]),
                }),
              ),
              customers: Type.Array(
                Type.Object({
                  customerId: Type.String(),
                  waiting: Type.Integer(),
                  oldestWaitSeconds: Type.Number(),
                }),
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        return {
          priorities: await queueByPriority(ctx.db),
          customers: await topWaitingCustomers(ctx.db, request.query.top ?? 10),
        };
      },
    );
  };
