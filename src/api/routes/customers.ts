import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { issueKey, listKeys, revokeKey } from '../../catalog/api-keys.ts';
import { createCustomer, getCustomer, listCustomers } from '../../catalog/customers.ts';
import { usageOf } from '../../catalog/quota-usage.ts';
import type { CustomerRow, KeyRole } from '../../catalog/schema.ts';
import { AppError } from '../../errors.ts';
import { effectiveLimits } from '../../ingest/customer-limits.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, Name, OneOf, Uuid } from '../schemas.ts';

/** What an exact re-upload meets (PATCH /v1/customers/{id}). */
export const DuplicatesPolicy = OneOf(['accept', 'flag', 'reject'], {
  description:
    'An upload with the same bytes as an image in retention: accept records it (duplicateOf), flag marks it (and near duplicates) duplicateFlagged, reject answers 409 DUPLICATE_IMAGE',
});
const Customer = Type.Object({
  id: Uuid,
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  weight: Type.Integer({ description: "Its share of the workers against other customers' (default 1)" }),
  duplicates: DuplicatesPolicy,
});
const Nullable = <T extends import('@sinclair/typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const limitFields = {
  uploadsPerSecond: Nullable(
    Type.Number({ minimum: 0, maximum: 1e9, description: 'Uploads a second (token bucket); 0: no limit' }),
  ),
  bytesPerSecond: Nullable(
    Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'Bytes a second (token bucket); 0: no limit',
    }),
  ),
  monthlyImages: Nullable(
    Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'Images per UTC month; 0: no quota',
    }),
  ),
  monthlyBytes: Nullable(
    Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'Bytes per UTC month; 0: no quota',
    }),
  ),
  queueShare: Nullable(
    Type.Integer({
      minimum: 1,
      maximum: 2_147_483_647,
      description: "The customer's waiting images at most",
    }),
  ),
};
/** The customer's own settings: null is the platform's default (from the config). */
const Limits = Type.Object(limitFields);
const EffectiveLimits = Type.Object({
  uploadsPerSecond: Type.Number(),
  bytesPerSecond: Type.Integer(),
  monthlyImages: Type.Integer(),
  monthlyBytes: Type.Integer(),
  queueShare: Type.Integer(),
});
/** What a customer's answers show of its limits: its own, those in force, and this month's usage. */
export const LimitsView = Type.Object({
  limits: Limits,
  effectiveLimits: EffectiveLimits,
  usage: Type.Object({
    month: Type.String({ description: 'YYYY-MM, UTC' }),
    images: Type.Integer(),
    bytes: Type.Integer(),
  }),
});
/** The limits an admin may set (PATCH /v1/customers/{id}): a key left out is unchanged. */
export const LimitsPatch = Type.Partial(Type.Object(limitFields), { additionalProperties: false });
const CustomerDetail = Type.Composite([Customer, LimitsView]);

export async function limitsView(ctx: ApiContext, c: CustomerRow) {
  const usage = await usageOf(ctx.db, c.id, ctx.clock.now());
  return {
    limits: ownLimits(c),
    effectiveLimits: effectiveLimits(c, ctx.config.limits),
    usage: { month: usage.month.slice(0, 7), images: usage.images, bytes: usage.bytes },
  };
}
const num = (v: number | string | null) => (v === null ? null : Number(v));
function ownLimits(c: CustomerRow) {
  return {
    uploadsPerSecond: num(c.uploads_per_second),
    bytesPerSecond: num(c.bytes_per_second),
    monthlyImages: num(c.monthly_images),
    monthlyBytes: num(c.monthly_bytes),
    queueShare: num(c.queue_share),
  };
}

const Key = Type.Object({
  id: Uuid,
  role: Type.String(),
  customerId: Type.Union([Uuid, Type.Null()]),
  name: Type.String(),
  prefix: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
const IssuedKey = Type.Object({
  id: Uuid,
  apiKey: Type.String({ description: 'Shown once; only its hash is stored' }),
  prefix: Type.String(),
});

export const customerRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const admin = requireRole(ctx.db, 'admin');
    const detail = async (c: CustomerRow) => ({
      id: c.id,
      name: c.name,
      createdAt: c.created_at.toISOString(),
      weight: c.weight,
      duplicates: c.duplicates,
      ...(await limitsView(ctx, c)),
    });

    app.get(
      '/v1/customers/:id',
      {
        onRequest: admin,
        schema: {
          summary:
            "A customer, its own limits (null: the default), the limits in force and this month's usage",
          tags: ['customers'],
          params: Type.Object({ id: Uuid }),
          response: { 200: CustomerDetail, ...errorResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const customer = await getCustomer(ctx.db, request.params.id);
        if (!customer) throw new AppError('NOT_FOUND', 'No such customer.');
        return detail(customer);
      },
    );

    app.post(
      '/v1/customers',
      {
        onRequest: admin,
        schema: {
          summary: 'Create a customer and its first API key',
          tags: ['customers'],
          body: Type.Object({
            name: Name({
              description: 'Unique among customers, ignoring case; spaces around it are trimmed',
            }),
          }),
          response: {
            201: Type.Composite([Customer, Type.Object({ apiKey: Type.String() })]),
            ...errorResponses(400, 401, 403, 409, 413),
          },
        },
      },
      async (request, reply) => {
        const { customer, key } = await createCustomer(ctx.db, request.body.name.trim());
        return reply.status(201).send({
          id: customer.id,
          name: customer.name,
          createdAt: customer.created_at.toISOString(),
          weight: customer.weight,
          duplicates: customer.duplicates,
          apiKey: key.key,
        });
      },
    );

    app.get(
      '/v1/customers',
      {
        onRequest: admin,
        schema: {
          summary: 'List customers',
          tags: ['customers'],
          response: {
            200: Type.Object({
              customers: Type.Array(Type.Composite([Customer, Type.Object({ limits: Limits })])),
            }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async () => ({
        customers: (await listCustomers(ctx.db)).map((c) => ({
          id: c.id,
          name: c.name,
          createdAt: c.created_at.toISOString(),
          limits: ownLimits(c),
          weight: c.weight,
          duplicates: c.duplicates,
        })),
      }),
    );

    app.post(
      '/v1/customers/:id/keys',
      {
        onRequest: admin,
        schema: {
          summary: 'Issue another API key for a customer (e.g. to rotate: issue, switch, revoke the old one)',
          tags: ['keys'],
          params: Type.Object({ id: Uuid }),
          body: Type.Optional(Type.Object({ name: Type.Optional(Name()) })),
          response: { 201: IssuedKey, ...errorResponses(400, 401, 403, 404, 413) },
        },
      },
      async (request, reply) => {
        if (!(await getCustomer(ctx.db, request.params.id)))
          throw new AppError('NOT_FOUND', 'No such customer.');
        const issued = await issueKey(ctx.db, 'customer', {
          customerId: request.params.id,
          name: request.body?.name?.trim() ?? 'issued by admin',
        });
        return reply.status(201).send({ id: issued.id, apiKey: issued.key, prefix: issued.prefix });
      },
    );

    app.get(
      '/v1/keys',
      {
        onRequest: admin,
        schema: {
          summary: 'List keys (never the keys themselves, only their prefixes)',
          tags: ['keys'],
          querystring: Type.Object({
            customerId: Type.Optional(Uuid),
            role: Type.Optional(OneOf(['admin', 'customer', 'analyst'])),
          }),
          response: { 200: Type.Object({ keys: Type.Array(Key) }), ...errorResponses(400, 401, 403) },
        },
      },
      async (request) => ({
        keys: (await listKeys(ctx.db, request.query as { customerId?: string; role?: KeyRole })).map((k) => ({
          id: k.id,
          role: k.role,
          customerId: k.customer_id,
          name: k.name,
          prefix: k.prefix,
          createdAt: k.created_at.toISOString(),
          revokedAt: k.revoked_at?.toISOString() ?? null,
        })),
      }),
    );

    app.post(
      '/v1/analyst-keys',
      {
        onRequest: admin,
        schema: {
          summary: 'Issue an analyst key: reads statistics, never images',
          tags: ['keys'],
          body: Type.Optional(Type.Object({ name: Type.Optional(Name()) })),
          response: { 201: IssuedKey, ...errorResponses(400, 401, 403, 413) },
        },
      },
      async (request, reply) => {
        const issued = await issueKey(ctx.db, 'analyst', { name: request.body?.name?.trim() ?? 'analyst' });
        return reply.status(201).send({ id: issued.id, apiKey: issued.key, prefix: issued.prefix });
      },
    );

    app.delete(
      '/v1/keys/:id',
      {
        onRequest: admin,
        schema: {
          summary: 'Revoke a key at once (never the last active admin key: 409 LAST_ADMIN_KEY)',
          tags: ['keys'],
          params: Type.Object({ id: Uuid }),
          response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        if (!(await revokeKey(ctx.db, request.params.id)))
          throw new AppError('NOT_FOUND', 'No such active key.');
        return reply.status(204).send(null);
      },
    );
  };
