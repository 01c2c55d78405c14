import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { TUS_EXPOSED_HEADERS, TUS_PATH } from '../../ingest/tus.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { takeUploadSlot } from '../upload-slot.ts';

const METHODS = ['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/**
 * The tus 1.0.0 endpoint, mounted as @tus/server's documentation shows for Fastify: the body is left
 * unparsed and the raw request and response are handed to the tus server. Our part is around it:
 * the customer's key (OPTIONS, a browser's preflight, carries none), its upload slots, the
 * body-idle timeout, ownership and landed uploads (ingest/tus.ts `before`), and CORS on our own
 * refusals so a browser can read them.
 *
 * It is kept out of the OpenAPI document on purpose (`hide`): it is a protocol endpoint, described
 * by the tus specification and spoken by tus clients, not by request and answer schemas; fuzzing
 * it from a schema would only test the schema. test/integration/tus-protocol.test.ts sends it
 * garbage instead, and no answer may be a 500.
 */
export const tusRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    await base.register(async (app) => {
      app.removeAllContentTypeParsers();
      app.addContentTypeParser('*', (_request, _payload, done) => done(null));

      const takeSlot = takeUploadSlot(ctx.uploadSlots, ctx.config.limits.concurrentUploads);
      const authenticate = requireRole(ctx.db, 'customer');
      const { bodyIdleTimeoutMs } = ctx.config.http;
      const origins = ctx.config.corsOrigins;

      // Our own refusals (a bad key, another customer's upload) carry CORS too, or a browser could
      // not read them; the tus server sets its own on what it answers.
      app.addHook('onSend', async (request, reply) => {
        const origin = request.headers.origin;
        if (origin && (origins.includes('*') || origins.includes(origin))) {
          reply.header('access-control-allow-origin', origin);
          reply.header('vary', 'Origin');
          reply.header(
            'access-control-expose-headers',
            ['Tus-Resumable', 'Upload-Offset', 'Upload-Length', 'Location', ...TUS_EXPOSED_HEADERS].join(
              ', ',
            ),
          );
        }
      });

      async function admit(request: FastifyRequest, reply: FastifyReply): Promise<void> {
        if (request.method === 'OPTIONS') return;
        await authenticate(request);
        if (request.method !== 'PATCH' && request.method !== 'POST') return;
        await takeSlot(request, reply);
        // A body that stops arriving ends its request (and frees the upload's lock) after the idle
        // timeout; the client resumes from the offset the server kept.
        request.raw.setTimeout(bodyIdleTimeoutMs, () => request.raw.destroy());
      }

      const handler = async (request: FastifyRequest, reply: FastifyReply) => {
        const customerId = request.principal?.customerId ?? undefined;
        const id = (request.params as { id?: string }).id;
        if (id !== undefined && customerId) {
          const landed = await ctx.tus.before(customerId, request.method, id);
          if (landed) return reply.status(landed.status).headers(landed.headers).send();
        }
        reply.hijack();
        await ctx.tus.handle(request.raw, reply.raw, customerId);
      };

      const schema = { hide: true };
      app.route({ method: [...METHODS], url: TUS_PATH, onRequest: admit, schema, handler });
      app.route({ method: [...METHODS], url: `${TUS_PATH}/:id`, onRequest: admit, schema, handler });
    });
  };
