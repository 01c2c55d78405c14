import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { AppError } from '../../errors.ts';
import { identityOf, readDeclarations } from '../../processing/processors/declarations.ts';
import { formatFields } from '../../processing/processors/fields.ts';
import { cancelRun, getRun, listRuns, type RunRow, startRun } from '../../processing/reprocess.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, Text, Uuid } from '../schemas.ts';

const RunBody = Type.Object({
  id: Uuid,
  processor: Type.String(),
  status: Type.Union([Type.Literal('running'), Type.Literal('done'), Type.Literal('cancelled')]),
  customerId: Type.Union([Uuid, Type.Null()]),
  since: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  force: Type.Boolean(),
  total: Type.Integer({ description: 'Images in scope when the run started' }),
  queued: Type.Integer(),
  updated: Type.Integer(),
  skipped: Type.Integer({ description: 'Already at the current version, or gone since' }),
  failed: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

function toRunBody(run: NonNullable<RunRow>) {
  return {
    id: run.id,
    processor: run.processor,
    status: run.status,
    customerId: run.customer_id,
    since: run.since?.toISOString() ?? null,
    force: run.force,
    total: run.total,
    queued: run.queued,
    updated: run.updated,
    skipped: run.skipped,
    failed: run.failed,
    createdAt: run.created_at.toISOString(),
    finishedAt: run.finished_at?.toISOString() ?? null,
  };
}

/** The configured processors, and reprocess runs: the operator's side of the company's code. */
export const processorRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const admin = requireRole(ctx.db, 'admin');
    const names = ctx.config.processors.map((p) => p.name);

    app.get(
      '/v1/processors',
      {
        onRequest: admin,
        schema: {
          summary: 'The processors declared in the configuration',
          tags: ['processors'],
          response: {
            200: Type.Object({ processors: Type.Array(Type.Record(Type.String(), Type.Unknown())) }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async () => {
        // What the workers' processors said at their boot: the file may name neither version nor fields.
        const declared = new Map((await readDeclarations(ctx.db)).map((d) => [d.identity, d]));
        return {
          processors: ctx.config.processors.map((p) => {
            const d = declared.get(identityOf(p));
            return {
              name: p.name || d?.name || null,
              kind: p.kind,
              version: d?.version ?? p.version ?? null,
              required: p.required,
              after: p.after,
              timeoutMs: p.timeoutMs,
              concurrency: p.concurrency,
              fields: d?.fields ?? (p.fields ? formatFields(p.fields) : null),
              declaredAt: d?.declaredAt ?? null,
            };
          }),
        };
      },
    );

    app.post(
      '/v1/reprocess',
      {
        onRequest: admin,
        schema: {
          summary:
            'Re-run one processor over the images in retention, as background jobs (resumes a matching run)',
          tags: ['processors'],
          body: Type.Object({
            // The configured names are the document's examples; another is PROCESSOR_UNKNOWN (a stable code).
            processor: Text({
              minLength: 1,
              maxLength: 63,
              ...(names.length && names.every(Boolean) ? { examples: names } : {}),
            }),
            customerId: Type.Optional(Uuid),
            since: Type.Optional(Type.String({ format: 'date-time' })),
            force: Type.Optional(Type.Boolean()),
          }),
          response: {
            202: Type.Composite([
              RunBody,
              Type.Object({ resumed: Type.Boolean({ description: 'A matching run was resumed' }) }),
            ]),
            ...errorResponses(400, 401, 403, 413),
          },
        },
      },
      async (request, reply) => {
        const { processor, customerId, since, force } = request.body;
        if (names.every(Boolean) && !names.includes(processor)) {
          throw new AppError(
            'PROCESSOR_UNKNOWN',
            `No processor "${processor}"; configured: ${names.join(', ') || 'none'}.`,
          );
        }
        const { run, resumed } = await startRun(
          ctx.db,
          { processor, customerId, since: since ? new Date(since) : undefined, force },
          ctx.clock.now(),
          ctx.config.retentionMs,
        );
        return reply.code(202).send({ ...toRunBody(run), resumed });
      },
    );

    app.get(
      '/v1/reprocess',
      {
        onRequest: admin,
        schema: {
          summary: 'Reprocess runs, newest first',
          tags: ['processors'],
          response: { 200: Type.Object({ runs: Type.Array(RunBody) }), ...errorResponses(400, 401, 403) },
        },
      },
      async () => ({ runs: (await listRuns(ctx.db, 100)).map(toRunBody) }),
    );

    app.get(
      '/v1/reprocess/:id',
      {
        onRequest: admin,
        schema: {
          summary: 'One reprocess run and its progress',
          tags: ['processors'],
          params: Type.Object({ id: Uuid }),
          response: { 200: RunBody, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const run = await getRun(ctx.db, request.params.id);
        if (!run) throw new AppError('NOT_FOUND', 'No reprocess run with that id.');
        return toRunBody(run);
      },
    );

    app.delete(
      '/v1/reprocess/:id',
      {
        onRequest: admin,
        schema: {
          summary: 'Cancel a running reprocess run; jobs already running finish',
          tags: ['processors'],
          params: Type.Object({ id: Uuid }),
          response: { 200: RunBody, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        await cancelRun(ctx.db, request.params.id, ctx.clock.now());
        const run = await getRun(ctx.db, request.params.id);
        if (!run) throw new AppError('NOT_FOUND', 'No reprocess run with that id.');
        return toRunBody(run);
      },
    );
  };
