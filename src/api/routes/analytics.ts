import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import {
  breakdown,
  DEFAULT_BINS,
  DIMENSION_NAME,
  listDimensions,
  MAX_BINS,
  MAX_NAME_LENGTH,
} from '../../analytics/dimensions.ts';
import { duplicatesByDay } from '../../analytics/duplicate-stats.ts';
import { processorStats } from '../../analytics/processor-stats.ts';
import { dayRange } from '../../analytics/range.ts';
import { filterOptions, summary } from '../../analytics/summary.ts';
import { AppError } from '../../errors.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { Day, errorResponses, Text, Uuid } from '../schemas.ts';

/** A range of UTC days (the last 30 when left out) and, optionally, one customer. */
const RangeQuery = Type.Object({
  from: Type.Optional(Day()),
  to: Type.Optional(Day()),
  customerId: Type.Optional(Uuid),
});
const Kind = Type.Union([Type.Literal('string'), Type.Literal('number'), Type.Literal('boolean')]);
const Value = Type.Union([Type.String(), Type.Boolean()]);
const BreakdownBody = Type.Object({
  dimension: Type.String(),
  from: Type.String(),
  to: Type.String(),
  kind: Type.Union([Kind, Type.Null()], { description: 'null when no image in range has it' }),
  images: Type.Integer({ description: 'processed images with a value of this kind' }),
  otherKindImages: Type.Integer({ description: 'images whose value has another kind, left out' }),
  values: Type.Optional(
    Type.Array(Type.Object({ value: Value, images: Type.Integer() }), {
      description: 'strings, booleans: the 50 most common values',
    }),
  ),
  other: Type.Optional(
    Type.Object(
      { values: Type.Integer(), images: Type.Integer() },
      { description: 'strings, booleans: the values past the top 50, summed' },
    ),
  ),
  stats: Type.Optional(
    Type.Object({
      min: Type.Number(),
      max: Type.Number(),
      avg: Type.Number(),
      p50: Type.Number(),
      p90: Type.Number(),
    }),
  ),
  histogram: Type.Optional(
    Type.Array(Type.Object({ from: Type.Number(), to: Type.Number(), images: Type.Integer() }), {
      description: 'numbers: equal-width buckets from min to max',
    }),
  ),
  wholeBins: Type.Optional(Type.Boolean({ description: 'numbers: one bucket per whole number' })),
  overTime: Type.Array(
    Type.Object({
      day: Type.String(),
      images: Type.Integer(),
      value: Type.Optional(
        Type.Union([Value, Type.Null()], { description: 'null: the values past the top 10' }),
      ),
      avg: Type.Optional(Type.Number()),
    }),
  ),
});
const require = createRequire(import.meta.url);

export const analyticsRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const reader = requireRole(ctx.db, 'analyst', 'admin');
    /** The range asked for, or the last 30 days (UTC), as every statistics route; a backwards range holds no day, so its answers are empty. */
    const range = (query: { from?: string; to?: string }) => dayRange(query, ctx.clock.now());

    app.get(
      '/v1/analytics/summary',
      {
        onRequest: reader,
        schema: {
          summary: 'Every dashboard chart for a date range and filters, from the rollups',
          tags: ['analytics'],
          querystring: Type.Object({
            from: Type.Optional(Day()),
            to: Type.Optional(Day()),
            customerId: Type.Optional(Uuid),
            source: Type.Optional(Text({ maxLength: 50 })),
            format: Type.Optional(Text({ maxLength: 50 })),
          }),
          response: { 200: Type.Record(Type.String(), Type.Unknown()), ...errorResponses(400, 401, 403) },
        },
      },
      async (request) => summary(ctx.db, { ...request.query, ...range(request.query) }),
    );

    app.get(
      '/v1/analytics/dimensions',
      {
        onRequest: reader,
        schema: {
          summary: "The processors' fields present in facts of a date range, to group by",
          tags: ['analytics'],
          querystring: RangeQuery,
          response: {
            200: Type.Object({
              from: Type.String(),
              to: Type.String(),
              dimensions: Type.Array(
                Type.Object({
                  name: Type.String(),
                  kind: Kind,
                  images: Type.Integer(),
                  values: Type.Optional(Type.Integer({ description: 'distinct values (strings, booleans)' })),
                  otherKindImages: Type.Optional(Type.Integer()),
                }),
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        const { from, to } = range(request.query);
        const dimensions = await listDimensions(ctx.db, { from, to, customerId: request.query.customerId });
        return { from, to, dimensions };
      },
    );

    app.get(
      '/v1/analytics/duplicates',
      {
        onRequest: reader,
        schema: {
          summary: 'Duplicates per customer per landing day: exact (same bytes) and near (similar pixels)',
          tags: ['analytics', 'similarity'],
          querystring: RangeQuery,
          response: {
            200: Type.Object({
              from: Type.String(),
              to: Type.String(),
              rows: Type.Array(
                Type.Object({
                  day: Type.String(),
                  customerId: Uuid,
                  images: Type.Integer({ description: 'images of the customer that landed that day' }),
                  exact: Type.Integer({ description: 'of them, the same bytes as an earlier image' }),
                  near: Type.Integer({ description: 'of them, near an earlier image (other bytes)' }),
                }),
                { description: 'days with at least one duplicate' },
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        const days = range(request.query);
        return {
          ...days,
          rows: await duplicatesByDay(ctx.db, { ...days, customerId: request.query.customerId }),
        };
      },
    );

    app.get(
      '/v1/analytics/processors',
      {
        onRequest: reader,
        schema: {
          summary: "How the company's processors fared: runs, failures by code, time, versions, by day",
          tags: ['analytics'],
          querystring: RangeQuery,
          response: {
            200: Type.Object({
              from: Type.String(),
              to: Type.String(),
              processors: Type.Array(
                Type.Object({
                  name: Type.String(),
                  runs: Type.Integer({
                    description: 'runs that succeeded or failed (skipped ones are not runs)',
                  }),
                  ok: Type.Integer(),
                  failed: Type.Integer(),
                  skipped: Type.Integer({ description: 'not run: a processor it runs after failed' }),
                  failureRate: Type.Number(),
                  avgMs: Type.Union([Type.Number(), Type.Null()]),
                  p50Ms: Type.Union([Type.Number(), Type.Null()]),
                  p90Ms: Type.Union([Type.Number(), Type.Null()]),
                  errors: Type.Array(Type.Object({ code: Type.String(), runs: Type.Integer() })),
                  versions: Type.Array(Type.Object({ version: Type.String(), runs: Type.Integer() })),
                }),
              ),
              overTime: Type.Array(
                Type.Object({
                  day: Type.String(),
                  processor: Type.String(),
                  runs: Type.Integer(),
                  failed: Type.Integer(),
                }),
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) =>
        processorStats(ctx.db, { ...range(request.query), customerId: request.query.customerId }),
    );

    app.get(
      '/v1/analytics/dimensions/:name',
      {
        onRequest: reader,
        schema: {
          summary:
            'One processor field in a date range: images by value (strings, booleans) or its distribution (numbers), and by day',
          tags: ['analytics'],
          params: Type.Object({ name: Type.String({ pattern: DIMENSION_NAME, maxLength: MAX_NAME_LENGTH }) }),
          querystring: Type.Object({
            from: Type.Optional(Day()),
            to: Type.Optional(Day()),
            customerId: Type.Optional(Uuid),
            source: Type.Optional(Text({ maxLength: 50 })),
            format: Type.Optional(Text({ maxLength: 50 })),
            bins: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BINS, default: DEFAULT_BINS })),
          }),
          response: { 200: BreakdownBody, ...errorResponses(400, 401, 403) },
        },
      },
      async (request) => {
        const { customerId, source, format, bins } = request.query;
        return breakdown(ctx.db, {
          dimension: request.params.name,
          ...range(request.query),
          customerId,
          source,
          format,
          bins,
        });
      },
    );

    app.get(
      '/v1/analytics/filters',
      {
        onRequest: reader,
        schema: {
          summary: 'Customers, formats and sources to filter by',
          tags: ['analytics'],
          response: {
            200: Type.Object({
              customers: Type.Array(Type.Object({ id: Uuid, name: Type.String() })),
              formats: Type.Array(Type.String()),
              sources: Type.Array(Type.String()),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async () => filterOptions(ctx.db),
    );

    app.post(
      '/v1/analytics/export',
      {
        onRequest: requireRole(ctx.db, 'admin'),
        schema: {
          summary:
            'Write the analytics Parquet files now (they are written every IMAGELAKE_EXPORT_INTERVAL anyway)',
          tags: ['analytics'],
          response: {
            200: Type.Object({
              facts: Type.Array(Type.String(), { description: 'days of facts written' }),
              rollups: Type.Array(Type.String(), { description: 'days of rollups written' }),
              files: Type.Integer(),
            }),
            ...errorResponses(400, 401, 403, 409),
          },
        },
      },
      async () => {
        const result = await ctx.exportNow();
        if (!result) throw new AppError('SCHEDULER_BUSY');
        return result;
      },
    );

    // The dashboard: a static page that asks for an analyst or admin key and calls the API above.
    const page = new URL('../../web/dashboard.html', import.meta.url);
    app.get('/dashboard', { schema: { hide: true } }, async (_request, reply) => {
      reply.header('content-type', 'text/html; charset=utf-8');
      reply.header('cache-control', 'no-store');
      return reply.send(await readFile(page));
    });
    app.get('/dashboard/echarts.min.js', { schema: { hide: true } }, async (_request, reply) => {
      reply.header('content-type', 'text/javascript; charset=utf-8');
      reply.header('cache-control', 'public, max-age=86400');
      return reply.send(await readFile(require.resolve('echarts/dist/echarts.min.js')));
    });
  };
