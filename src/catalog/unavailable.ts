/**
 * Tells a catalog that cannot be reached (PostgreSQL stopped, restarting, or the network to it
 * gone) from a query that failed on its own merits. The first is worth retrying: the API answers
 * it with 503 CATALOG_UNAVAILABLE, as it answers LAKE_UNAVAILABLE for the lake.
 */

/** Set on errors raised while reaching PostgreSQL, where a bare ECONNREFUSED could come from anywhere. */
const FROM_CATALOG = Symbol.for('imagelake.catalogConnection');

/**
 * SQLSTATEs that mean the server went away or is not taking sessions: class 08 (connection
 * exception), 57P01-57P03 (admin or crash shutdown, starting up), 53300 (too many connections).
 */
function isConnectionSqlState(code: string): boolean {
  return code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code);
}

// What node-postgres says when a session dies under it; these never come from the lake.
const PG_CONNECTION_MESSAGES = [
  /^Connection terminated/,
  // "Client has encountered a connection error and is not queryable", "Client was closed and is not queryable"
  /is not queryable/,
  /^timeout exceeded when trying to connect/,
];

/** Marks an error raised while talking to PostgreSQL, so a network error can be told apart from the lake's. */
export function markCatalogError(error: unknown): unknown {
  if (error && typeof error === 'object') (error as Record<symbol, boolean>)[FROM_CATALOG] = true;
  return error;
}

export function isCatalogUnavailable(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 4) return false;
  const e = error as { code?: unknown; message?: unknown; cause?: unknown; severity?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : '';
  // PostgreSQL's own errors carry a severity beside their SQLSTATE.
  if (typeof e.severity === 'string' && isConnectionSqlState(code)) return true;
  if (PG_CONNECTION_MESSAGES.some((re) => re.test(message))) return true;
  // A network error on the way to PostgreSQL (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EHOSTUNREACH…).
  if ((error as Record<symbol, boolean>)[FROM_CATALOG] && /^E[A-Z]+$/.test(code)) return true;
  return isCatalogUnavailable(e.cause, depth + 1);
}
