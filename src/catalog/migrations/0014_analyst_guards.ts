// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

/**
 * Functions with effects outside the analyst's own query. Every role may run them (EXECUTE is
 * granted to PUBLIC), so an analyst could take the scheduler's or the receipts' advisory lock and
 * stop purges and erasures, cancel other sessions, raise its own work_mem, notify listeners or fill
 * the disk with large objects. Revoking from PUBLIC is the only way to keep them from one role; the
 * platform keeps them, as only a superuser runs this (a superuser bypasses EXECUTE checks).
 */
const SIDE_EFFECTS = `
  p.proname like 'pg\\_%advisory%'
  or p.proname in ('set_config', 'pg_notify', 'pg_cancel_backend', 'pg_terminate_backend',
    'pg_reload_conf', 'pg_rotate_logfile', 'pg_export_snapshot', 'pg_logical_emit_message',
    'lo_import', 'lo_export')
  or p.proname like 'lo\\_%' or p.proname in ('loread', 'lowrite')
`;

export async function up(db: Kysely<unknown>): Promise<void> {
  /*
   * Raises a stable SQLSTATE when the running total of a result's bytes passes the cap, so the
   * server stops producing a result the API would refuse anyway instead of sending it.
   */
  await sql`create schema if not exists imagelake_sql`.execute(db);
  await sql`create or replace function imagelake_sql.within_result_limit(total bigint, max_bytes bigint)
    returns boolean language plpgsql volatile as $$
    begin
      if total > max_bytes then
        raise exception 'The result is larger than % bytes.', max_bytes using errcode = 'IL413';
      end if;
      return true;
    end $$`.execute(db);
  await sql`grant usage on schema imagelake_sql to public`.execute(db);
  await sql
    .raw(`do $$
    declare f record;
    begin
      if not (select rolsuper from pg_roles where rolname = current_user) then
        raise notice 'not a superuser: side-effect functions stay executable by every role';
        return;
      end if;
      for f in select p.oid::regprocedure as sig from pg_proc p
        where p.pronamespace = 'pg_catalog'::regnamespace and (${SIDE_EFFECTS})
      loop
        execute format('grant execute on function %s to %I', f.sig, current_user);
        execute format('revoke execute on function %s from public', f.sig);
      end loop;
      -- Temporary tables are outside temp_file_limit: without this, a BI session that switches
      -- its transaction to read-write could fill the disk with one.
      execute format('grant temporary on database %I to %I', current_database(), current_user);
      execute format('revoke temporary on database %I from public', current_database());
    end $$`)
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(`do $$
    declare f record;
    begin
      if not (select rolsuper from pg_roles where rolname = current_user) then return; end if;
      for f in select p.oid::regprocedure as sig from pg_proc p
        where p.pronamespace = 'pg_catalog'::regnamespace and (${SIDE_EFFECTS})
      loop
        execute format('grant execute on function %s to public', f.sig);
      end loop;
      execute format('grant temporary on database %I to public', current_database());
    end $$`)
    .execute(db);
  await sql`drop schema if exists imagelake_sql cascade`.execute(db);
}
