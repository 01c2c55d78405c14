import { sql } from 'kysely';
import type pg from 'pg';
import type { Db } from './database.ts';

/**
 * Session advisory locks: held by a connection of their own (a session lock lives as long as its
 * connection, so a process that dies releases it). The keys are their users' (the scheduler's).
 */

/**
 * Runs work while holding the lock `key`, on a connection taken from the pool for it; { ran: false }
 * when another session holds it.
 */
export async function withSessionLock<T>(
  pool: pg.Pool,
  key: number,
  work: () => Promise<T>,
): Promise<{ ran: true; value: T } | { ran: false }> {
  const client = await pool.connect();
  // A connection whose query failed goes back to the pool as broken, to be closed rather than lent
  // again (its session lock, if it holds one, ends with it). The work's own errors are not its.
  let broken: Error | undefined;
  const query = async <R extends pg.QueryResultRow>(text: string) => {
    try {
      return await client.query<R>(text, [key]);
    } catch (error) {
      broken = error instanceof Error ? error : new Error(String(error));
      throw error;
    }
  };
  try {
    const { rows } = await query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked');
    if (!rows[0]?.locked) return { ran: false };
    try {
      return { ran: true, value: await work() };
    } finally {
      await query('select pg_advisory_unlock($1)');
    }
  } finally {
    client.release(broken);
  }
}

/**
 * Takes the session lock named `name` on `client` if it is free; the lock lives until unlockNamed
 * or until the client's connection ends (a process that dies releases it).
 */
export async function tryLockNamed(client: pg.PoolClient, name: string): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>(
    'select pg_try_advisory_lock(hashtextextended($1, 0)) as locked',
    [name],
  );
  return rows[0]?.locked === true;
}

export async function unlockNamed(client: pg.PoolClient, name: string): Promise<void> {
  await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [name]);
}

/**
 * A transaction lock on one customer's bytes (its checksum), released at commit: two landings of the
 * same bytes for one customer take turns deciding whether the other came first, in any process.
 */
export async function lockContent(trx: Db, customerId: string, checksum: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`${customerId}:${checksum}`}, 0))`.execute(trx);
}

/**
 * A transaction lock on one customer's monthly quota, released at commit: the landings of a customer
 * with a quota take turns reading the month's count and adding to it, in any process, so two at
 * once never both take the last image of the month.
 */
export async function lockQuota(trx: Db, customerId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`quota:${customerId}`}, 0))`.execute(trx);
}
