/** Text tables and CSV for the CLI's listings (imagelake stats). */

type Row = Record<string, unknown>;

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** Bytes in decimal units (1 MB = 1,000,000 bytes), as the dashboard shows them. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** The leading columns first (those the rows have), then every other key in first-seen order. */
function columnsOf(rows: Row[], leading: string[] = []): string[] {
  const columns = leading.filter((c) => rows.some((r) => c in r));
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  return columns;
}

function cell(column: string, value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return column === 'bytes' ? formatBytes(value) : integer.format(value);
  return String(value);
}

/**
 * Columns padded to their widest cell, numbers right-aligned, a header and a rule: what a person
 * reads. Bytes are shown in decimal units; --json and --csv carry the exact numbers.
 */
export function formatTable(rows: Row[], leading: string[] = []): string {
  const columns = columnsOf(rows, leading);
  const numeric = columns.map((c) =>
    rows.every((r) => r[c] === null || r[c] === undefined || typeof r[c] === 'number'),
  );
  const cells = rows.map((r) => columns.map((c) => cell(c, r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** RFC 4180 CSV: a header, then one line per row; a field with a comma, quote or newline is quoted. */
export function toCsv(rows: Row[], leading: string[] = []): string {
  const columns = columnsOf(rows, leading);
  const field = (v: unknown) => {
    const text = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return `${[columns, ...rows.map((r) => columns.map((c) => r[c]))].map((r) => r.map(field).join(',')).join('\r\n')}\r\n`;
}

/** Rows as a command prints them: --json, --csv, or a table (`empty` when there are none). */
export function printRows(
  rows: Row[],
  leading: string[],
  format: { json?: boolean; csv?: boolean },
  empty: string,
): void {
  if (format.json && format.csv) throw new Error('print --json or --csv, not both');
  if (format.json) console.log(JSON.stringify(rows, null, 2));
  else if (format.csv) process.stdout.write(toCsv(rows, leading));
  else console.log(rows.length ? formatTable(rows, leading) : empty);
}
