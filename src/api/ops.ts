import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { type HealthContext, healthRoutes } from './routes/health.ts';

/**
 * What a process without the api role serves (a worker, a kafka consumer, a scheduler):
 * `/healthz`, `/readyz` and `/metrics`, so an orchestrator can probe it and Prometheus can scrape
 * the counters only it keeps (processing, processor runs, Kafka ingest, purges).
 */
export async function buildOpsApp(ctx: HealthContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  });
  await app.register(healthRoutes(ctx));
  app.setNotFoundHandler((_request, reply) => {
    reply.status(404).send({
      error: {
        code: 'NOT_FOUND',
        message: 'This process has no api role: it serves /healthz, /readyz and /metrics only.',
      },
    });
  });
  return app;
}
