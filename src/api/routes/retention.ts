import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import {
  getCustomer,
  setDuplicatePolicy,
  setLimits,
  setRetention,
  setWeight,
} from '../../catalog/customers.ts';
import type { DuplicatePolicy } from '../../catalog/schema.ts';
import { formatDuration, parseDuration } from '../../config/duration.ts';
import { AppError } from '../../errors.ts';
import { eraseImages } from '../../retention/erase.ts';
import { listReceipts } from '../../retention/receipts.ts';
import { requireRole } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { errorResponses, Force, Matching, ReceiptBody, toReceiptBody, Uuid } from '../schemas.ts';
import { DuplicatesPolicy, LimitsPatch, LimitsView, limitsView } from './customers.ts';

export const retentionRoutes =
  (ctx: ApiContext): FastifyPluginAsync =>
  async (base) => {
    const app = base.withTypeProvider<import('@fastify/type-provider-typebox').TypeBoxTypeProvider>();
    const admin = requireRole(ctx.db, 'admin');

    app.get(
      '/v1/purges',
      {
        onRequest: admin,
        schema: {
          summary: 'Purge and erasure receipts, newest first',
          tags: ['retention'],
          querystring: Type.Object({
            // Optional in the document; the validator fills in the default.
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
            before: Type.Optional(
              // A seq is a PostgreSQL bigint, read back as a JavaScript number: past 2^53 is no seq.
              Type.Integer({
                minimum: 1,
                maximum: Number.MAX_SAFE_INTEGER,
                description: 'Only receipts with a smaller seq (paging)',
              }),
            ),
          }),
          response: {
            200: Type.Object({ receipts: Type.Array(ReceiptBody) }),
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (request) => ({
        receipts: (await listReceipts(ctx.db, { ...request.query, limit: request.query.limit ?? 100 })).map(
          toReceiptBody,
        ),
      }),
    );

    app.post(
      '/v1/purges',
      {
        onRequest: admin,
        schema: {
          summary: 'Run the retention purge now; answers with its receipt',
          tags: ['retention'],
          response: { 200: ReceiptBody, ...errorResponses(400, 401, 403, 409) },
        },
      },
      async () => {
        const receipt = await ctx.purgeNow();
        if (!receipt) throw new AppError('PURGE_RUNNING');
        return toReceiptBody(receipt);
      },
    );

    app.delete(
      '/v1/customers/:id/images',
      {
        onRequest: admin,
        schema: {
          summary:
            'Erase every image of a customer now, everywhere; answers with the receipt (409 LEGAL_HOLD, nothing erased, when images are under a legal hold, unless force=true)',
          tags: ['retention'],
          params: Type.Object({ id: Uuid }),
          querystring: Force,
          response: { 200: ReceiptBody, ...errorResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        if (!(await getCustomer(ctx.db, request.params.id)))
          throw new AppError('NOT_FOUND', 'No such customer.');
        return toReceiptBody(
          await eraseImages(ctx, { customerId: request.params.id }, { force: request.query.force }),
        );
      },
    );

    app.patch(
      '/v1/customers/:id',
      {
        onRequest: admin,
        schema: {
          summary:
            "Set a customer's retention window (shorter than the platform's, or null for the platform's) its weight in the workers' fair share, its limits (rates, monthly quotas, queue share; null: the default), and its duplicates policy (accept, flag, reject)",
          tags: ['customers', 'retention'],
          params: Type.Object({ id: Uuid }),
          body: Type.Object(
            {
              weight: Type.Optional(
                Type.Integer({
                  minimum: 1,
                  maximum: 1000,
                  description: "The customer's share of the workers against other customers' (default 1)",
                }),
              ),
              retention: Type.Optional(
                Type.Union([
                  Matching(
                    '^ *([0-9]+|([0-9]+([.][0-9]+)?(ms|s|m|h|d|w))+) *$',
                    'must be a duration such as 3d, 12h or 1d12h, or null',
                    { description: 'e.g. 3d, 12h; at most the platform window' },
                  ),
                  Type.Null(),
                ]),
              ),
              limits: Type.Optional(LimitsPatch),
              duplicates: Type.Optional(DuplicatesPolicy),
            },
            { minProperties: 1 },
          ),
          response: {
            200: Type.Composite([
              Type.Object({
                id: Uuid,
                name: Type.String(),
                retention: Type.String(),
                retentionMs: Type.Integer(),
                weight: Type.Integer(),
                duplicates: DuplicatesPolicy,
              }),
              LimitsView,
            ]),
            ...errorResponses(400, 401, 403, 404, 413),
          },
        },
      },
      async (request) => {
        const customer = await getCustomer(ctx.db, request.params.id);
        if (!customer) throw new AppError('NOT_FOUND', 'No such customer.');
        let retentionMs: number | null =
          customer.retention_ms === null ? null : Number(customer.retention_ms);
        if (request.body.retention === null) retentionMs = null;
        else if (request.body.retention !== undefined) {
          retentionMs = parseDuration(request.body.retention) ?? null;
          if (!retentionMs)
            throw new AppError(
              'VALIDATION_FAILED',
              `"${request.body.retention}" is not a duration such as 3d or 12h.`,
            );
          if (retentionMs > ctx.config.retentionMs) {
            throw new AppError(
              'VALIDATION_FAILED',
              `A customer's window cannot be longer than the platform's (${formatDuration(ctx.config.retentionMs)}).`,
            );
          }
        }
        if (request.body.retention !== undefined) await setRetention(ctx.db, customer.id, retentionMs);
        const weight = request.body.weight ?? customer.weight;
        if (request.body.weight !== undefined) await setWeight(ctx.db, customer.id, weight);
        const duplicates = (request.body.duplicates as DuplicatePolicy | undefined) ?? customer.duplicates;
        if (request.body.duplicates !== undefined) await setDuplicatePolicy(ctx.db, customer.id, duplicates);
        const updated = request.body.limits
          ? await setLimits(ctx.db, customer.id, request.body.limits)
          : customer;
        ctx.customerLimits.forget(customer.id);
        const effective = retentionMs ?? ctx.config.retentionMs;
        return {
          id: customer.id,
          name: customer.name,
          retention: formatDuration(effective),
          retentionMs: effective,
          weight,
          duplicates,
          ...(await limitsView(ctx, updated ?? customer)),
        };
      },
    );
  };
