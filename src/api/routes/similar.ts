import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { dayRange } from '../../analytics/range.ts';
import { isFlatImage, MAX_DISTANCE } from '../../catalog/image-hashes.ts';
import { AppError } from '../../errors.ts';
import { SNIFF_BYTES, sniff } from '../../ingest/sniff.ts';
import { fingerprintImage } from '../../processing/fingerprint-image.ts';
import { duplicateGroups } from '../../similarity/groups.ts';
import { similarTo } from '../../similarity/search.ts';
import { customerScope, requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { Day, errorResponses, Uuid } from '../schemas.ts';
import { imageVisibleTo } from './images.ts';

const Exact = Type.Object({ id: Uuid, landedAt: Type.String({ format: 'date-time' }) });
const Near = Type.Object({
  id: Uuid,
  distance: Type.Integer({ description: 'Bits of the 64-bit perceptual hash that differ' }),
  landedAt: Type.String({ format: 'date-time' }),
});
const Similar = {
  maxDistance: Type.Integer(),
  exact: Type.Array(Exact, { description: 'Images with the same bytes (SHA-256), oldest first' }),
  near: Type.Array(Near, { description: 'Images with other bytes within maxDistance, nearest first' }),
};
const SearchQuery = {
  maxDistance: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: MAX_DISTANCE,
      description: 'Bits that may differ (default IMAGELAKE_NEAR_DISTANCE)',
    }),
  ),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50, description: 'Of each kind' })),
};

/**
 * Near-duplicates: an image's similar images, search by image bytes (nothing stored), and a
 * customer's duplicate groups. Exact (same bytes) and near (similar pixels) are answered apart.
 */
export const similarRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const reader = requireRole(ctx.db, 'customer', 'admin');
    /** A customer key reads its own; an admin names the customer. */
    const customerOf = (request: FastifyRequest, asked: string | undefined): string => {
      const own = customerScope(request);
      if (own) return own;
      if (!asked) throw new AppError('VALIDATION_FAILED', 'An admin key names the customer: ?customerId=.');
      return asked;
    };

    app.get(
      '/v1/images/:id/similar',
      {
        onRequest: reader,
        schema: {
          summary: "The customer's images like this one: exact duplicates and near ones, nearest first",
          tags: ['images', 'similarity'],
          params: Type.Object({ id: Uuid }),
          querystring: Type.Object(SearchQuery),
          response: {
            200: Type.Object({ id: Uuid, phash: Type.Union([Type.String(), Type.Null()]), ...Similar }),
            ...errorResponses(400, 401, 403, 404),
          },
        },
      },
      async (request) => {
        const image = await imageVisibleTo(ctx, request, request.params.id);
        const maxDistance = request.query.maxDistance ?? ctx.config.nearDistance;
        // Not processed yet (or failed): it has no perceptual hash, so only its bytes can match.
        const answer = image.phash
          ? await similarTo(ctx.db, {
              customerId: image.customer_id,
              sha256: image.checksum,
              phash: image.phash,
              flat: (await isFlatImage(ctx.db, image.id)) ?? false,
              maxDistance,
              limit: request.query.limit ?? 50,
              exceptImageId: image.id,
            })
          : { maxDistance, exact: [], near: [] };
        return { id: image.id, phash: image.phash, ...answer };
      },
    );

    app.get(
      '/v1/duplicates',
      {
        onRequest: reader,
        schema: {
          summary:
            "A customer's duplicate groups among images landed from..to (UTC days): exact and near apart",
          tags: ['similarity'],
          querystring: Type.Object({
            customerId: Type.Optional(Uuid),
            from: Type.Optional(Day({ description: 'First landing day, UTC (default: 29 days before to)' })),
            to: Type.Optional(Day({ description: 'Last landing day, UTC (default: today)' })),
          }),
          response: {
            200: Type.Object({
              customerId: Uuid,
              from: Type.String(),
              to: Type.String(),
              exact: Type.Array(Type.Object({ sha256: Type.String(), images: Type.Array(Exact) })),
              near: Type.Array(
                Type.Object({
                  images: Type.Array(
                    Type.Object({
                      id: Uuid,
                      landedAt: Type.String({ format: 'date-time' }),
                      nearOf: Type.Union([Uuid, Type.Null()], {
                        description: 'The earlier image it matched when processed',
                      }),
                      distance: Type.Union([Type.Integer(), Type.Null()]),
                    }),
                  ),
                }),
              ),
              truncated: Type.Boolean({ description: 'More than 5000 matched images: narrow the range' }),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => {
        const customerId = customerOf(request, request.query.customerId);
        const { from, to } = dayRange(request.query, ctx.clock.now());
        return { customerId, from, to, ...(await duplicateGroups(ctx.db, customerId, from, to)) };
      },
    );

    // A search decodes an image as an upload does, so a customer's searches spend its upload rate
    // limits (shared by every api process): one customer searching in a loop cannot starve the others.
    async function searchLimit(request: FastifyRequest, reply: FastifyReply): Promise<void> {
      const own = customerScope(request);
      if (!own) return;
      const headers: Record<string, string> = {};
      try {
        await ctx.customerLimits.admit(own, headers);
      } finally {
        reply.headers(headers);
      }
    }

    // Search by image: the body is the image's bytes, read whole (at most IMAGELAKE_MAX_BYTES) in a
    // scope of its own, and fingerprinted as processing would; nothing is stored.
    await app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser(
        '*',
        { parseAs: 'buffer', bodyLimit: ctx.config.limits.maxBytes },
        (_r, body, done) => done(null, body),
      );
      scope.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>().post(
        '/v1/similar',
        {
          onRequest: [reader, searchLimit],
          schema: {
            summary: "Search by image: the customer's images like the one in the body (stores nothing)",
            tags: ['similarity'],
            consumes: ['image/*', 'application/octet-stream'],
            querystring: Type.Object({ ...SearchQuery, customerId: Type.Optional(Uuid) }),
            response: {
              200: Type.Object({ sha256: Type.String(), phash: Type.String(), ...Similar }),
              ...errorResponses(400, 401, 403, 413, 415, 422, 429),
            },
          },
        },
        async (request) => {
          const customerId = customerOf(request, request.query.customerId);
          const body = request.body as Buffer | undefined;
          if (!body || body.length === 0) throw new AppError('EMPTY_BODY');
          const own = customerScope(request);
          if (own) await ctx.customerLimits.chargeBytes(own, body.length);
          if (!sniff(body.subarray(0, SNIFF_BYTES))) throw new AppError('UNSUPPORTED_FORMAT');
          const { sha256, phash, flat } = await fingerprintImage(body, {
            maxPixels: ctx.config.limits.maxPixels,
            maxFrames: ctx.config.limits.maxFrames,
          });
          const maxDistance = request.query.maxDistance ?? ctx.config.nearDistance;
          const answer = await similarTo(ctx.db, {
            customerId,
            sha256,
            phash,
            flat,
            maxDistance,
            limit: request.query.limit ?? 50,
          });
          return { sha256, phash, ...answer };
        },
      );
    });
  };
