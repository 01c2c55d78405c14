import type { FastifyPluginAsync } from 'fastify';
import { queueByPriority } from '../../catalog/queue.ts';
import { purgeLagSeconds } from '../../retention/purge.ts';
import type { ApiContext } from '../context.ts';

/** What the health routes read: every process has it, with or without the API. */
export type HealthContext = Pick<ApiContext, 'db' | 'metrics' | 'clock' | 'config' | 'log' | 'ready'>;

export const healthRoutes =
  (ctx: HealthContext): FastifyPluginAsync =>
  async (app) => {
    app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

    app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
      try {
        return { status: 'ready', checks: await ctx.ready() };
      } catch (error) {
        return reply
          .status(503)
          .send({ status: 'not ready', error: { code: 'NOT_READY', message: (error as Error).message } });
      }
    });

    app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
      // Gauges that live in the catalog are read at scrape time, so every process reports the same truth.
      try {
        // By priority only, never by customer: ten thousand customers must not become ten thousand series.
        for (const p of await queueByPriority(ctx.db)) {
          ctx.metrics.queueDepth.set({ state: 'queued', priority: p.priority }, p.waiting);
          ctx.metrics.queueDepth.set({ state: 'running', priority: p.priority }, p.inFlight);
          ctx.metrics.queueOldestWait.set({ priority: p.priority }, p.oldestWaitSeconds ?? 0);
        }
        ctx.metrics.purgeLagSeconds.set(await purgeLagSeconds(ctx.db, ctx.clock, ctx.config.retentionMs));
      } catch (error) {
        ctx.log.warn({ err: error }, 'catalog gauges unavailable for this scrape');
      }
      reply.header('content-type', ctx.metrics.registry.contentType);
      return ctx.metrics.registry.metrics();
    });
  };
