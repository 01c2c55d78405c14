import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { type Db, guardCatalogPool } from '../catalog/database.ts';
import { applyAnalystRole, roleCanTakeAdvisoryLocks } from '../catalog/roles.ts';
import { getSetting, putSettingOnce } from '../catalog/settings.ts';
import { analystTypes } from './sql.ts';

export const ANALYST_ROLE = 'imagelake_analyst';
/** Memory a sort or hash of one analyst query may take before it spills to temporary files. */
export const ANALYST_WORK_MEM = '32MB';
/** Temporary disk one analyst session may fill (a superuser-only setting; skipped with a warning otherwise). */
export const ANALYST_TEMP_FILE_LIMIT = '1GB';

/**
 * The database role analysts, the SQL endpoint and BI tools use: it logs in, reads the analytics
 * schema and nothing else, runs every transaction read-only, and has a statement timeout. A real
 * role, not SET ROLE, because SQL an analyst writes could set its way back.
 */
export async function ensureAnalystRole(
  db: Db,
  log: Logger,
  timeoutMs: number,
): Promise<{ user: string; password: string } | undefined> {
  try {
    let password = await getSetting(db, 'analyst_password');
    if (!password)
      password = await putSettingOnce(db, 'analyst_password', randomBytes(18).toString('base64url'));
    await applyAnalystRole(
      db,
      {
        role: ANALYST_ROLE,
        password,
        timeoutMs,
        workMem: ANALYST_WORK_MEM,
        tempFileLimit: ANALYST_TEMP_FILE_LIMIT,
      },
      (error) =>
        log.warn(
          { err: error },
          `temp_file_limit for ${ANALYST_ROLE} needs a superuser; its temporary disk is unbounded`,
        ),
    );
    if (await roleCanTakeAdvisoryLocks(db, ANALYST_ROLE))
      log.warn(
        `${ANALYST_ROLE} can run advisory-lock and other side-effect functions: run the statements in docs/analytics.md ("What analyst SQL cannot do") once as a superuser`,
      );
    return { user: ANALYST_ROLE, password };
  } catch (error) {
    log.warn(
      { err: error },
      `could not set up the ${ANALYST_ROLE} role (needs CREATEROLE); analyst SQL is off`,
    );
    return undefined;
  }
}

/** The catalog's URL with the analyst's credentials instead of the platform's. */
export function analystUrl(databaseUrl: string, credentials: { user: string; password: string }): string {
  const url = new URL(databaseUrl);
  url.username = credentials.user;
  url.password = credentials.password;
  return url.toString();
}

/**
 * The analyst's own connections, apart from the platform's: a query there can never take a
 * connection purges, uploads or workers need. Waiting for one is bounded by the SQL timeout.
 */
export function analystPool(url: string, options: { max: number; waitMs: number }): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max,
    connectionTimeoutMillis: options.waitMs,
    types: analystTypes(pg.types),
  });
  pool.on('error', () => {});
  guardCatalogPool(pool);
  return pool;
}
