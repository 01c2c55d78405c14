import { Buffer } from 'node:buffer';
import { sql } from 'kysely';
import type pg from 'pg';
import type { Db } from '../catalog/database.ts';
import { AppError } from '../errors.ts';

export interface SqlOptions {
  maxRows: number;
  /** The most bytes an answer may have, as sent (JSON or CSV). */
  maxBytes: number;
  timeoutMs: number;
  format: 'json' | 'csv';
}

/** An analyst query's answer, already serialized, within the byte cap. */
export interface SqlAnswer {
  body: string;
  rowCount: number;
  truncated: boolean;
}

const WRITE =
  /^(insert|update|delete|merge|create|alter|drop|truncate|grant|revoke|copy|call|do|vacuum|analyze|reindex|cluster|comment|lock|set|reset|begin|start|commit|rollback|savepoint|prepare|execute|deallocate|listen|notify|unlisten|refresh|security|import|discard|load)\b/i;

/** The name the guarded query gives the analyst's rows and its running byte count. */
const ROW = 'imagelake analyst row';
const BYTES = 'imagelake result bytes';

/** The query without leading comments, whitespace and opening parentheses, to read its first word. */
function firstWord(query: string): string {
  let rest = query;
  for (;;) {
    const trimmed = rest.replace(/^[\s(]+/, '');
    if (trimmed.startsWith('--')) rest = trimmed.slice(trimmed.indexOf('\n') + 1 || trimmed.length);
    else if (trimmed.startsWith('/*')) rest = trimmed.slice(trimmed.indexOf('*/') + 2 || trimmed.length);
    else return trimmed;
  }
}

/**
 * The analyst's query with a running total of its rows' bytes (their text form), which raises
 * IL413 in the server once it passes the cap: a huge result is never produced, sent or held here,
 * whatever a single row or the whole result weighs. The query sits on lines of its own so a
 * trailing `--` comment cannot swallow the wrapper.
 */
export function guarded(text: string, maxBytes: number): string {
  return `select * from (select "${ROW}".*, sum(octet_length("${ROW}"::text)) over (rows unbounded preceding) as "${BYTES}" from (
${text}
) "${ROW}") guarded where imagelake_sql.within_result_limit(guarded."${BYTES}", ${Math.floor(maxBytes)})`;
}

/** PostgreSQL's error classes that mean the query itself is wrong, not the platform. */
function isQueryError(code: string): boolean {
  return /^(42|22|21|54|25|0A|2B|3F|44|0L|0P|2F|39|38)/.test(code) && code !== '25006';
}

/** The AppError a PostgreSQL error from an analyst query answers; anything else is returned as it is. */
export function sqlError(error: unknown): unknown {
  if (error instanceof AppError) return error;
  const e = error as { code?: string; message: string };
  const detail = e.message;
  if (e.code === 'IL413') return new AppError('SQL_RESULT_TOO_LARGE', detail);
  if (e.code === '25006' || /data-modifying/.test(detail)) return new AppError('SQL_WRITE_REFUSED', detail);
  if (e.code === '42501') return new AppError('SQL_FORBIDDEN', detail);
  if (e.code === '57014') return new AppError('SQL_TIMEOUT', detail);
  // Over work_mem's spill or temp_file_limit, or out of memory: the query asks too much.
  if (e.code === '53400' || e.code === '53200') return new AppError('SQL_RESOURCE_LIMIT', detail);
  if (e.code && isQueryError(e.code)) return new AppError('SQL_INVALID', detail);
  return error;
}

/**
 * Runs an analyst's query on the analyst role: a read-only transaction, the query wrapped in a
 * cursor (one statement, any SELECT shape), at most maxRows + 1 rows fetched to tell truncation and
 * at most maxBytes produced. The session ends with DISCARD ALL, so nothing it set or took (a lock,
 * a setting, a prepared statement) outlives the request; a session that cannot be reset is closed.
 */
export async function runAnalystSql(pool: pg.Pool, query: string, options: SqlOptions): Promise<SqlAnswer> {
  // One trailing ';' may end the statement, with comments after it.
  const text = query.trim().replace(/;(\s|--[^\n]*(\n|$))*$/, '');
  if (WRITE.test(firstWord(text))) throw new AppError('SQL_WRITE_REFUSED');
  const client = await pool.connect().catch((error: Error) => {
    // Every analyst connection stayed busy for the whole wait (pg's own message says "timeout").
    if (/timeout/i.test(error.message))
      throw new AppError('SQL_BUSY', 'No analyst connection came free in time.');
    throw new AppError('SQL_UNAVAILABLE', error.message);
  });
  let broken: Error | undefined;
  try {
    await client.query('begin read only');
    await client.query(`set local statement_timeout = ${Math.floor(options.timeoutMs)}`);
    // The query alone first: the extended protocol takes exactly one statement, so ';' cannot
    // smuggle a second one in, and a query that parses alone cannot close the guard's parentheses.
    await client.query({
      text: `declare analyst_check no scroll cursor for ${text}\n`,
      queryMode: 'extended',
    } as pg.QueryConfig);
    await client.query('close analyst_check');
    await client.query({
      text: `declare analyst_query no scroll cursor for ${guarded(text, options.maxBytes)}`,
      queryMode: 'extended',
    } as pg.QueryConfig);
    const result = await client.query(`fetch forward ${options.maxRows + 1} from analyst_query`);
    const columns = result.fields.filter((f) => f.name !== BYTES);
    const truncated = result.rows.length > options.maxRows;
    const rows = truncated ? result.rows.slice(0, options.maxRows) : result.rows;
    return serialize(columns, rows, truncated, options);
  } catch (error) {
    if (!(error as { code?: string }).code && !(error instanceof AppError)) broken = error as Error;
    throw sqlError(error);
  } finally {
    try {
      await client.query('rollback');
      await client.query('discard all');
    } catch (error) {
      broken ??= error as Error;
    }
    client.release(broken);
  }
}

/** Builds the answer row by row, refusing it as soon as it passes the byte cap. */
function serialize(
  fields: pg.FieldDef[],
  rows: Array<Record<string, unknown>>,
  truncated: boolean,
  options: SqlOptions,
): SqlAnswer {
  const parts: string[] = [];
  let bytes = 0;
  const add = (part: string) => {
    bytes += Buffer.byteLength(part);
    if (bytes > options.maxBytes)
      throw new AppError(
        'SQL_RESULT_TOO_LARGE',
        `The result is larger than ${options.maxBytes} bytes (IMAGELAKE_SQL_MAX_BYTES).`,
      );
    parts.push(part);
  };
  if (options.format === 'csv') {
    add(`${fields.map((f) => csvCell(f.name)).join(',')}\n`);
    for (const row of rows) add(`${fields.map((f) => csvCell(row[f.name])).join(',')}\n`);
  } else {
    const columns = fields.map((f) => ({ name: f.name, type: f.dataTypeID }));
    add(`{"columns":${JSON.stringify(columns)},"rows":[`);
    rows.forEach((row, i) => {
      delete row[BYTES];
      add(`${i ? ',' : ''}${JSON.stringify(row, jsonValue)}`);
    });
    add(`],"rowCount":${rows.length},"truncated":${truncated}}`);
  }
  return { body: parts.join(''), rowCount: rows.length, truncated };
}

function jsonValue(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** One CSV field (RFC 4180 quoting); objects as JSON, dates as ISO 8601, null as empty. */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text =
    value instanceof Date
      ? value.toISOString()
      : isRawJson(value)
        ? value.rawJSON
        : typeof value === 'object'
          ? JSON.stringify(value)
          : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// JSON.rawJSON (Node 21+) is not in TypeScript's lib yet.
const Json = JSON as unknown as {
  rawJSON(text: string): { rawJSON: string };
  isRawJSON(value: unknown): value is { rawJSON: string };
};
const isRawJson = (value: unknown): value is { rawJSON: string } => Json.isRawJSON(value);

const FINITE = /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i;

/**
 * bigint (count(*)) and numeric (sum, avg) as JSON numbers with every digit the database sent,
 * rather than strings; NaN and infinities, which JSON cannot hold, stay strings.
 */
export const analystTypes = (types: typeof pg.types): pg.CustomTypesConfig => ({
  getTypeParser: ((oid: number, format?: string) => {
    if (format !== 'binary' && (oid === types.builtins.INT8 || oid === types.builtins.NUMERIC))
      return (text: string) => (FINITE.test(text) ? Json.rawJSON(text) : text);
    return types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
});

/** The tables and columns of the analytics schema, in table and column order: what analysts can query. */
export async function analystSchema(
  db: Db,
): Promise<Record<string, Array<{ column: string; type: string }>>> {
  const rows = await sql<{ table: string; column: string; type: string }>`
          select table_name as table, column_name as column, data_type as type
          from information_schema.columns where table_schema = 'analytics' order by table_name, ordinal_position`.execute(
    db,
  );
  const tables: Record<string, Array<{ column: string; type: string }>> = {};
  for (const r of rows.rows) {
    tables[r.table] ??= [];
    tables[r.table]!.push({ column: r.column, type: r.type });
  }
  return tables;
}
