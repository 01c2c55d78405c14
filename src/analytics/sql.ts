import type pg from 'pg';
import { AppError } from '../errors.ts';

export interface SqlResult {
  columns: Array<{ name: string; type: number }>;
  rows: Array<Record<string, unknown>>;
  rowCount: number;
  truncated: boolean;
}

const WRITE =
  /^(insert|update|delete|merge|create|alter|drop|truncate|grant|revoke|copy|call|do|vacuum|analyze|reindex|cluster|comment|lock|set|reset|begin|start|commit|rollback|savepoint|prepare|execute|deallocate|listen|notify|unlisten|refresh|security|import|discard|load)\b/i;

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
 * Runs an analyst's query on the analyst role: a read-only transaction, the query wrapped in a
 * cursor (one statement, any SELECT shape) and at most maxRows + 1 rows fetched to tell truncation.
 * Errors come back with the catalogue's SQL_* codes.
 */
export async function runAnalystSql(
  pool: pg.Pool,
  query: string,
  options: { maxRows: number; timeoutMs: number },
): Promise<SqlResult> {
  const text = query.trim().replace(/;\s*$/, '');
  if (WRITE.test(firstWord(text))) throw new AppError('SQL_WRITE_REFUSED');
  const client = await pool.connect().catch((error) => {
    throw new AppError('SQL_UNAVAILABLE', (error as Error).message);
  });
  try {
    await client.query('begin read only');
    await client.query(`set local statement_timeout = ${Math.floor(options.timeoutMs)}`);
    // The extended protocol takes exactly one statement, so ';' cannot smuggle a second one in.
    await client.query({
      text: `declare analyst_query no scroll cursor for ${text}`,
      queryMode: 'extended',
    } as pg.QueryConfig);
    const result = await client.query(`fetch forward ${options.maxRows + 1} from analyst_query`);
    const truncated = result.rows.length > options.maxRows;
    const rows = truncated ? result.rows.slice(0, options.maxRows) : result.rows;
    return {
      columns: result.fields.map((f) => ({ name: f.name, type: f.dataTypeID })),
      rows,
      rowCount: rows.length,
      truncated,
    };
  } catch (error) {
    if (error instanceof AppError) throw error;
    const e = error as { code?: string; message: string; position?: string };
    const detail = e.message;
    if (e.code === '25006' || /data-modifying/.test(detail)) throw new AppError('SQL_WRITE_REFUSED', detail);
    if (e.code === '42501') throw new AppError('SQL_FORBIDDEN', detail);
    if (e.code === '57014') throw new AppError('SQL_TIMEOUT', detail);
    if (e.code?.startsWith('42') || e.code?.startsWith('22') || e.code === '0A000')
      throw new AppError('SQL_INVALID', detail);
    throw error;
  } finally {
    await client.query('rollback').catch(() => {});
    client.release();
  }
}

export function toCsv(result: SqlResult): string {
  const cell = (value: unknown): string => {
    if (value === null || value === undefined) return '';
    const text =
      value instanceof Date
        ? value.toISOString()
        : typeof value === 'object'
          ? JSON.stringify(value)
          : String(value);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const lines = [result.columns.map((c) => cell(c.name)).join(',')];
  for (const row of result.rows) lines.push(result.columns.map((c) => cell(row[c.name])).join(','));
  return `${lines.join('\n')}\n`;
}
