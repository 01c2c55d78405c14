import type { FastifyRequest } from 'fastify';
import { findPrincipal, type Principal } from '../catalog/api-keys.ts';
import type { Db } from '../catalog/database.ts';
import type { KeyRole } from '../catalog/schema.ts';
import { AppError } from '../errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/**
 * An onRequest hook that admits only keys of the given roles. It runs before the body is read or
 * validated: a request without a valid key is 401 whatever it carries, and its body is never parsed.
 */
export function requireRole(db: Db, ...roles: KeyRole[]) {
  return async (request: FastifyRequest): Promise<void> => {
    const header = request.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match?.[1]) throw new AppError('UNAUTHORIZED');
    const principal = await findPrincipal(db, match[1]);
    if (!principal) throw new AppError('UNAUTHORIZED', 'The key is unknown or revoked.');
    if (!roles.includes(principal.role))
      throw new AppError('FORBIDDEN', `This needs a key of role ${roles.join(' or ')}.`);
    request.principal = principal;
  };
}

/** The customer a request acts for: its own for a customer key; any for admin (undefined = all). */
export function customerScope(request: FastifyRequest): string | undefined {
  const p = request.principal;
  return p?.role === 'customer' ? (p.customerId ?? undefined) : undefined;
}
