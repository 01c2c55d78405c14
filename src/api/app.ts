import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { AppError, ERRORS } from '../errors.ts';
import type { ApiContext } from './context.ts';
import { clientErrorHandler, frameworkErrors, RouteMethods } from './http-errors.ts';
import { optionalBodies } from './openapi.ts';
import { catalogOutage } from './outages.ts';
import { analyticsRoutes } from './routes/analytics.ts';
import { customerRoutes } from './routes/customers.ts';
import { failureRoutes } from './routes/failures.ts';
import { healthRoutes } from './routes/health.ts';
import { holdRoutes } from './routes/holds.ts';
import { imageRoutes } from './routes/images.ts';
import { processorRoutes } from './routes/processors.ts';
import { retentionRoutes } from './routes/retention.ts';
import { similarRoutes } from './routes/similar.ts';
import { sqlRoutes } from './routes/sql.ts';
import { statsRoutes } from './routes/stats.ts';
import { tusRoutes } from './routes/tus.ts';
import { uploadRoutes } from './routes/uploads.ts';
import { usageRoutes } from './routes/usage.ts';
import { webhookDeliveryRoutes } from './routes/webhook-deliveries.ts';
import { webhookStatsRoutes } from './routes/webhook-stats.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import { ErrorBody, ReceiptBody } from './schemas.ts';
import { securityHeaders } from './security.ts';
import { buildValidator, formatValidationErrors } from './validation.ts';

export type App = FastifyInstance;

/** Fastify's own errors that are the client's doing, mapped onto the catalogue's codes. */
const CLIENT_ERRORS: Record<string, AppError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'IMAGE_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'VALIDATION_FAILED',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'VALIDATION_FAILED',
};

export async function buildApp(ctx: ApiContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    // Requests are measured in /metrics; a log line per request would drown the ones that matter.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // No request may be unbounded: the headers, then the whole request (body included) have a time
    // limit; an upload whose body stops arriving is cut off sooner by the routes (body-idle timeout).
    requestTimeout: ctx.config.http.requestTimeoutMs,
    http: {
      headersTimeout: ctx.config.http.headersTimeoutMs,
      requestTimeout: ctx.config.http.requestTimeoutMs,
      // Node checks those limits on this interval; a quarter of the shorter one keeps them close to exact.
      connectionsCheckingInterval: Math.max(
        100,
        Math.min(30_000, Math.floor(ctx.config.http.headersTimeoutMs / 4)),
      ),
    },
    // Path parameters up to a dimension's name: a processor (63) and a field (64) with a dot between.
    routerOptions: { maxParamLength: 200 },
    // Behind a load balancer the client's address is in X-Forwarded-For.
    trustProxy: true,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false } },
    schemaController: { compilersFactory: { buildValidator } },
    schemaErrorFormatter: formatValidationErrors,
    clientErrorHandler: clientErrorHandler(ctx.log as FastifyBaseLogger),
    frameworkErrors,
    // While closing, requests reach the drain's hook, which refuses them in the documented shape.
    return503OnClosing: false,
  }).withTypeProvider<TypeBoxTypeProvider>();
  const routeMethods = new RouteMethods();
  app.addHook('onRoute', (route) => routeMethods.add(route.url, route.method));

  app.decorateRequest('principal', null);
  ctx.drain?.install(app, ctx.metrics);
  app.addSchema(ErrorBody);
  app.addSchema(ReceiptBody);

  await securityHeaders(app);
  await app.register(swagger, {
    ...optionalBodies(),
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'imagelake',
        version: '1',
        description: 'Image data platform: ingest, lake, processing, retention, statistics.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  /** 405 with Allow for a known path asked with another method; 404 for an unknown path. */
  const noRoute = (request: FastifyRequest, reply: FastifyReply) => {
    const allowed = routeMethods.allowed(request.url);
    if (allowed) {
      reply.header('allow', allowed.join(', '));
      const { status, message } = ERRORS.METHOD_NOT_ALLOWED;
      return reply.status(status).send({ error: { code: 'METHOD_NOT_ALLOWED', message } });
    }
    return reply.status(404).send({
      error: { code: 'NOT_FOUND', message: 'No such route. The API is described at /openapi.json.' },
    });
  };

  app.setErrorHandler((error: FastifyError | AppError, request, reply) => {
    // A method with a body (QUERY) on no route fails its body parsing before the 404 handler runs.
    if (request.is404) return noRoute(request, reply);
    let appError: AppError;
    if (error instanceof AppError) appError = error;
    else if ((error as FastifyError).validation) appError = new AppError('VALIDATION_FAILED', error.message);
    // Busboy's errors carry no code: a multipart body without a boundary, or cut short.
    else if (/^Multipart: /.test(error.message)) {
      appError = new AppError('VALIDATION_FAILED', `The multipart body is malformed (${error.message}).`);
    } else if ((error as FastifyError).code && CLIENT_ERRORS[(error as FastifyError).code]) {
      appError = new AppError(CLIENT_ERRORS[(error as FastifyError).code]!);
    } else if ((error as FastifyError).statusCode && (error as FastifyError).statusCode! < 500) {
      appError = new AppError('VALIDATION_FAILED', error.message);
    } else {
      appError = catalogOutage(error, reply) ?? new AppError('INTERNAL');
    }
    // A client that hangs up mid-request (a cancelled upload) breaks the read of its body: that is
    // the client's doing, not the server's, and no one is left to answer.
    if (request.raw.destroyed && !request.raw.complete) {
      request.log.info(
        { url: request.url, method: request.method },
        'client disconnected before the request was read',
      );
      return reply
        .status(400)
        .send({ error: { code: 'MALFORMED_REQUEST', message: 'The client disconnected.' } });
    }
    if (appError.status >= 500) request.log.error({ err: error, url: request.url }, 'request failed');
    else request.log.debug({ code: appError.code, url: request.url }, 'request refused');
    // A 5xx says what to do, never what broke inside.
    const message =
      appError.status >= 500 && appError.code === 'INTERNAL' ? ERRORS.INTERNAL.message : appError.message;
    return reply.status(appError.status).send({ error: { code: appError.code, message } });
  });

  app.setNotFoundHandler(noRoute);

  // An optional body may be left out (the validator sees an absent body as null), but a JSON null
  // sent as the body is no object.
  app.addHook('preValidation', async (request) => {
    if (request.body === null && request.headers['content-type'] && request.routeOptions.schema?.body)
      throw new AppError('VALIDATION_FAILED', 'The body must be a JSON object, or left out; not null.');
  });

  // An answer sent before the body was read (a refused upload) must not leave the rest of the body
  // in the connection for the next request to trip over; reading gigabytes to discard them is worse.
  app.addHook('onSend', async (request, reply) => {
    if (!request.raw.complete) reply.header('connection', 'close');
  });

  app.addHook('onResponse', async (request, reply) => {
    ctx.metrics.httpSeconds.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unknown',
        status: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(healthRoutes(ctx));
  await app.register(customerRoutes(ctx));
  await app.register(imageRoutes(ctx));
  await app.register(similarRoutes(ctx));
  await app.register(uploadRoutes(ctx));
  await app.register(tusRoutes(ctx));
  await app.register(statsRoutes(ctx));
  await app.register(retentionRoutes(ctx));
  await app.register(holdRoutes(ctx));
  await app.register(failureRoutes(ctx));
  await app.register(analyticsRoutes(ctx));
  await app.register(sqlRoutes(ctx));
  await app.register(processorRoutes(ctx));
  await app.register(usageRoutes(ctx));
  await app.register(webhookRoutes(ctx));
  await app.register(webhookDeliveryRoutes(ctx));
  await app.register(webhookStatsRoutes(ctx));
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
