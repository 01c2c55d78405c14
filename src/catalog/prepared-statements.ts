import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type pg from 'pg';

/**
 * Named (prepared) statements for the catalog's hot statements. Unnamed, PostgreSQL parses and plans
 * every statement each time it runs: on the per-image path that was more of its CPU than running
 * them (planning 3.5 s against 3.2 s of execution over 1,000 images). Named, a session parses a
 * statement once, and after five runs PostgreSQL keeps a generic plan when it costs no more than
 * the custom ones (otherwise it goes on planning, as before).
 *
 * Only single-level statements are named: a lookup, an insert, an update of one table, whose generic
 * plan is the custom one with its values left out. A statement with a CTE or a subquery runs unnamed
 * and is planned with its values every time (a generic plan cannot see how many ids an array holds
 * or how far a LIMIT goes: the webhook claim's took 33 ms when a partial index hung on a value),
 * unless its owner marked it PREPARE after measuring its generic plan (the job claims, the rollups,
 * the similarity search, the webhook claim and record).
 *
 * A statement is named from its second run in the process (one-off statements, an analyst's query,
 * are never kept), and at most MAX_NAMED texts are (a statement whose text varies, a bulk insert of
 * N rows, takes a few; past the cap the rest run unnamed). Each session prepares a name on its first
 * use, as the driver does (pg's Client keeps what its connection has parsed).
 *
 * Off (`IMAGELAKE_DATABASE_PREPARED=false`) behind a pooler in transaction mode older than
 * PgBouncer 1.21, which cannot carry a session's prepared statements from one transaction to the
 * next.
 */

/** Statement texts named at most, per process. */
const MAX_NAMED = 200;
/** Texts counted at most while waiting for their second run: past it the count starts again. */
const MAX_SEEN = 5000;

/** PostgreSQL refuses a prepared statement whose result columns changed under it (a migration). */
const CHANGED_RESULT = 'cached plan must not change result type';

export function prepareStatements(pool: pg.Pool): void {
  const named = new Map<string, string>();
  const seen = new Set<string>();
  const nameOf = (text: string): string | undefined => {
    const name = named.get(text);
    if (name || named.size >= MAX_NAMED || !preparable(text)) return name;
    if (!seen.has(text)) {
      if (seen.size >= MAX_SEEN) seen.clear();
      seen.add(text);
      return undefined;
    }
    seen.delete(text);
    const made = `il_${createHash('sha1').update(text).digest('base64url')}`;
    named.set(text, made);
    return made;
  };
  pool.on('connect', (client) => {
    // Names this session must not use again: their statement's result changed after it prepared it.
    const stale = new Set<string>();
    const query = client.query;
    client.query = function (this: pg.Client, ...args: unknown[]) {
      const [text, values] = args;
      // Only what Kysely sends (text and values, no callback): anything else goes as it came.
      if (typeof text !== 'string' || args.length > 2 || (values !== undefined && !Array.isArray(values)))
        return (query as (...a: unknown[]) => unknown).apply(this, args);
      const name = nameOf(text);
      if (!name || stale.has(name)) return (query as (...a: unknown[]) => unknown).apply(this, args);
      const result = (query as (config: pg.QueryConfig) => Promise<pg.QueryResult>).call(this, {
        name,
        text,
        values: values as unknown[] | undefined,
      });
      return result.catch((error: Error) => {
        if (!error.message?.includes(CHANGED_RESULT)) return Promise.reject(error);
        // A migration changed a table under this session's statement: it runs unnamed from now on,
        // here. Outside a transaction it runs again at once; inside one this run fails (the
        // transaction is aborted), and the caller's next try works.
        stale.add(name);
        if (this.getTransactionStatus() !== 'I') return Promise.reject(error);
        return (query as (...a: unknown[]) => unknown).apply(this, args);
      });
    } as typeof client.query;
  });
}

/**
 * Marks a statement of more than one level whose generic plan was measured to be as good as its
 * custom ones (no partial index hangs on a parameter, no LIMIT or array size steers it): it is
 * prepared too.
 */
export const PREPARE = sql.raw('/* prepare */ ');

/** A statement prepared: one of one level (no CTE, no subquery, one SELECT at most), or marked. */
export function preparable(text: string): boolean {
  if (text.startsWith('/* prepare */')) return true;
  return !/^\s*with\b/i.test(text) && (text.match(/\bselect\b/gi)?.length ?? 0) <= 1;
}
