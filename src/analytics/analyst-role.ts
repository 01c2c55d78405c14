import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { type Db, guardCatalogPool } from '../catalog/database.ts';
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
    let password = (
      await db.selectFrom('settings').select('value').where('key', '=', 'analyst_password').executeTakeFirst()
    )?.value;
    if (!password) {
      password = randomBytes(18).toString('base64url');
      await db
        .insertInto('settings')
        .values({ key: 'analyst_password', value: password })
        .onConflict((oc) => oc.column('key').doNothing())
        .execute();
      password = (
        await db
          .selectFrom('settings')
          .select('value')
          .where('key', '=', 'analyst_password')
          .executeTakeFirstOrThrow()
      ).value;
    }
    const role = sql.id(ANALYST_ROLE);
    const database = (await sql<{ db: string }>`select current_database() as db`.execute(db)).rows[0]!.db;
    await sql`do $$ begin
      if not exists (select from pg_roles where rolname = ${sql.lit(ANALYST_ROLE)}) then create role ${role} login; end if;
    end $$`.execute(db);
    await sql`alter role ${role} with login password ${sql.lit(password)} connection limit 20`.execute(db);
    await sql`alter role ${role} set default_transaction_read_only = on`.execute(db);
    await sql`alter role ${role} set statement_timeout = ${sql.lit(`${timeoutMs}ms`)}`.execute(db);
    await sql`alter role ${role} set search_path = analytics`.execute(db);
    await sql`alter role ${role} set work_mem = ${sql.lit(ANALYST_WORK_MEM)}`.execute(db);
    await sql`alter role ${role} set temp_file_limit = ${sql.lit(ANALYST_TEMP_FILE_LIMIT)}`
      .execute(db)
      .catch((error) =>
        log.warn(
          { err: error },
          `temp_file_limit for ${ANALYST_ROLE} needs a superuser; its temporary disk is unbounded`,
        ),
      );
    await sql`grant connect on database ${sql.id(database)} to ${role}`.execute(db);
    await sql`revoke all on schema public from ${role}`.execute(db);
    await sql`grant usage on schema analytics to ${role}`.execute(db);
    await sql`grant select on all tables in schema analytics to ${role}`.execute(db);
    await sql`alter default privileges in schema analytics grant select on tables to ${role}`.execute(db);
    // The result-size guard of POST /v1/sql (migration 0014).
    await sql`grant usage on schema imagelake_sql to ${role}`.execute(db);
    const { rows } = await sql<{ open: boolean }>`
      select has_function_privilege(${ANALYST_ROLE}, 'pg_try_advisory_lock(bigint)', 'execute') as open`.execute(
      db,
    );
    if (rows[0]?.open)
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
