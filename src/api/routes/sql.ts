import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { KeyLimiter } from '../../analytics/key-limiter.ts';
import { analystSchema, runAnalystSql } from '../../analytics/sql.ts';
import { AppError } from '../../errors.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, jsonOrCsv, OneOf, wantsCsv } from '../schemas.ts';

/**
 * Analysts' own SQL: the analytics schema's tables, read-only queries (bounded in rows, bytes, time
 * and per key), and the connection string BI tools use for the same role.
 */
export const sqlRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const reader = requireRole(ctx.db, 'analyst', 'admin');
    const limiter = new KeyLimiter(ctx.config.analytics.sqlConcurrency);

    app.get(
      '/v1/analytics/schema',
      {
        onRequest: reader,
        schema: {
          summary: 'Tables and columns analysts can query',
          tags: ['analytics'],
          response: {
            200: Type.Object({
              schema: Type.String(),
              tables: Type.Record(
                Type.String(),
                Type.Array(Type.Object({ column: Type.String(), type: Type.String() })),
              ),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async () => {
        const tables = await analystSchema(ctx.db);
        return { schema: 'analytics', tables };
      },
    );

    app.post(
      '/v1/sql',
      {
        onRequest: reader,
        schema: {
          summary: 'Run a read-only query on the analytics schema (JSON, or CSV with format=csv)',
          tags: ['analytics'],
          body: Type.Object({
            query: Type.String({
              minLength: 1,
              maxLength: 100_000,
              examples: ['select day, format, sum(images) as images from rollup_daily group by 1, 2'],
            }),
            format: Type.Optional(OneOf(['json', 'csv'])),
          }),
          response: {
            200: jsonOrCsv(
              Type.Object({
                columns: Type.Array(Type.Object({ name: Type.String(), type: Type.Integer() })),
                rows: Type.Array(Type.Record(Type.String(), Type.Unknown())),
                rowCount: Type.Integer(),
                truncated: Type.Boolean(),
              }),
            ),
            ...errorResponses(400, 401, 403, 408, 413, 429, 503),
          },
        },
      },
      async (request, reply) => {
        const analyst = ctx.analyst;
        if (!analyst) throw new AppError('SQL_UNAVAILABLE');
        const format = wantsCsv(request.body.format, request.headers.accept) ? 'csv' : 'json';
        const answer = await limiter.run(request.principal!.keyId, () =>
          runAnalystSql(analyst.pool, request.body.query, {
            maxRows: ctx.config.analytics.sqlMaxRows,
            maxBytes: ctx.config.analytics.sqlMaxBytes,
            timeoutMs: ctx.config.analytics.sqlTimeoutMs,
            format,
          }),
        );
        if (format === 'csv') {
          reply.header('content-type', 'text/csv; charset=utf-8');
          if (answer.truncated) reply.header('x-truncated', 'true');
        } else reply.header('content-type', 'application/json; charset=utf-8');
        return reply.send(answer.body);
      },
    );

    app.get(
      '/v1/analytics/connection',
      {
        onRequest: requireRole(ctx.db, 'admin'),
        schema: {
          summary:
            'The read-only connection string for BI tools (Metabase, Superset, Looker Studio, Tableau)',
          tags: ['analytics'],
          response: {
            200: Type.Object({
              url: Type.String(),
              schema: Type.String(),
              readOnly: Type.Boolean(),
              statementTimeoutMs: Type.Integer(),
            }),
            ...errorResponses(400, 401, 403, 503),
          },
        },
      },
      async () => {
        if (!ctx.analyst) throw new AppError('SQL_UNAVAILABLE');
        return {
          url: ctx.analyst.url,
          schema: 'analytics',
          readOnly: true,
          statementTimeoutMs: ctx.config.analytics.sqlTimeoutMs,
        };
      },
    );
  };
