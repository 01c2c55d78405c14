import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * The database roles the platform manages (today the analysts' role): the only DDL on roles and
 * grants outside the migrations. Why the role is shaped so is told in analytics/analyst-role.ts.
 */
export interface AnalystRoleSpec {
  role: string;
  password: string;
  timeoutMs: number;
  workMem: string;
  tempFileLimit: string;
}

/**
 * Creates the role if missing and (re)applies its password, limits and grants. Setting
 * temp_file_limit needs a superuser: its refusal goes to `onTempFileLimitRefused`, the rest goes on.
 */
export async function applyAnalystRole(
  db: Db,
  spec: AnalystRoleSpec,
  onTempFileLimitRefused: (error: unknown) => void,
): Promise<void> {
  const role = sql.id(spec.role);
  const database = (await sql<{ db: string }>`select current_database() as db`.execute(db)).rows[0]!.db;
  await sql`do $$ begin
      if not exists (select from pg_roles where rolname = ${sql.lit(spec.role)}) then create role ${role} login; end if;
    end $$`.execute(db);
  await sql`alter role ${role} with login password ${sql.lit(spec.password)} connection limit 20`.execute(db);
  await sql`alter role ${role} set default_transaction_read_only = on`.execute(db);
  await sql`alter role ${role} set statement_timeout = ${sql.lit(`${spec.timeoutMs}ms`)}`.execute(db);
  await sql`alter role ${role} set search_path = analytics`.execute(db);
  await sql`alter role ${role} set work_mem = ${sql.lit(spec.workMem)}`.execute(db);
  await sql`alter role ${role} set temp_file_limit = ${sql.lit(spec.tempFileLimit)}`
    .execute(db)
    .catch(onTempFileLimitRefused);
  await sql`grant connect on database ${sql.id(database)} to ${role}`.execute(db);
  await sql`revoke all on schema public from ${role}`.execute(db);
  await sql`grant usage on schema analytics to ${role}`.execute(db);
  await sql`grant select on all tables in schema analytics to ${role}`.execute(db);
  await sql`alter default privileges in schema analytics grant select on tables to ${role}`.execute(db);
  // The result-size guard of POST /v1/sql (migration 0014).
  await sql`grant usage on schema imagelake_sql to ${role}`.execute(db);
}

/** Whether the role may still run advisory-lock (side-effect) functions. */
export async function roleCanTakeAdvisoryLocks(db: Db, role: string): Promise<boolean> {
  const { rows } = await sql<{ open: boolean }>`
      select has_function_privilege(${role}, 'pg_try_advisory_lock(bigint)', 'execute') as open`.execute(db);
  return Boolean(rows[0]?.open);
}
