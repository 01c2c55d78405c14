import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { dayRange } from '../../analytics/range.ts';
import { queryStats, STAT_DIMENSIONS, type StatDimension } from '../../analytics/stats.ts';
import { AppError } from '../../errors.ts';
import { customerScope, requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { Day, errorResponses, Matching, Uuid } from '../schemas.ts';

const GROUP = `(${STAT_DIMENSIONS.join('|')})`;

export const statsRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    app.get(
      '/v1/stats',
      {
        onRequest: requireRole(ctx.db, 'admin', 'analyst', 'customer'),
        schema: {
          summary:
            'Images and bytes that reached an outcome, summed over days and grouped (customers see their own)',
          tags: ['statistics'],
          querystring: Type.Object({
            from: Type.Optional(
              Day({ description: 'First day, inclusive (default: 29 days before "to": the last 30 days)' }),
            ),
            to: Type.Optional(Day({ description: 'Last day, inclusive (default: today)' })),
            groupBy: Type.Optional(
              Matching(
                `^ *${GROUP}? *(, *${GROUP}? *)*$`,
                `must be a comma-separated list of ${STAT_DIMENSIONS.join(', ')}`,
                { description: `Comma-separated: ${STAT_DIMENSIONS.join(', ')}` },
              ),
            ),
            customerId: Type.Optional(Uuid),
          }),
          response: {
            200: Type.Object({
              from: Type.String(),
              to: Type.String(),
              groupBy: Type.Array(Type.String()),
              rows: Type.Array(
                Type.Object({
                  day: Type.Optional(Type.String()),
                  customer: Type.Optional(Type.String()),
                  customerName: Type.Optional(Type.String()),
                  format: Type.Optional(Type.String()),
                  source: Type.Optional(Type.String()),
                  status: Type.Optional(Type.String()),
                  images: Type.Integer(),
                  bytes: Type.Integer(),
                }),
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        const { from, to } = dayRange(request.query, ctx.clock.now());
        const groupBy = (request.query.groupBy ?? '')
          .split(',')
          .map((g) => g.trim())
          .filter(Boolean);
        const unknown = groupBy.filter((g) => !STAT_DIMENSIONS.includes(g as StatDimension));
        if (unknown.length)
          throw new AppError(
            'VALIDATION_FAILED',
            `Cannot group by ${unknown.join(', ')}; use ${STAT_DIMENSIONS.join(', ')}.`,
          );
        // A range whose "from" is after its "to" holds no day, so no row.
        const customerId = customerScope(request) ?? request.query.customerId;
        const rows = await queryStats(ctx.db, { from, to, groupBy: groupBy as StatDimension[], customerId });
        return { from, to, groupBy, rows };
      },
    );
  };
