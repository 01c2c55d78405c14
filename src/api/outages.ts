import type { FastifyReply } from 'fastify';
import { isCatalogUnavailable } from '../catalog/unavailable.ts';
import { AppError } from '../errors.ts';

/** PostgreSQL restarts in seconds; a client that waits this long usually finds it back. */
const CATALOG_RETRY_AFTER_SECONDS = 5;

/**
 * A request that failed because the catalog could not be reached answers 503 CATALOG_UNAVAILABLE
 * with Retry-After, not 500: nothing was recorded, and the same request with the same
 * Idempotency-Key succeeds once PostgreSQL is back.
 */
export function catalogOutage(error: unknown, reply: FastifyReply): AppError | undefined {
  if (!isCatalogUnavailable(error)) return undefined;
  reply.header('retry-after', String(CATALOG_RETRY_AFTER_SECONDS));
  return new AppError('CATALOG_UNAVAILABLE', undefined, { cause: error });
}
