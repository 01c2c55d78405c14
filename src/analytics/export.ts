import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Db } from '../catalog/database.ts';
import { getSetting, putSetting } from '../catalog/settings.ts';
import { type Clock, utcDay } from '../clock.ts';
import type { Lake } from '../lake/port.ts';
import { changedDays, factDays as daysWithFacts, factsOfDay } from './facts.ts';
import { rollupDays, rollupsOfDay } from './rollups.ts';
import { usageDays, usageOfDay } from './usage.ts';

/**
 * Parquet for external warehouses (BigQuery external tables, DuckDB, Spark), written by DuckDB into
 * the lake and partitioned Hive-style by day, so readers see `dt` as a column:
 *   analytics/facts/dt=YYYY-MM-DD/facts.parquet          one row per image (follows the retention window)
 *   analytics/rollup_daily/dt=YYYY-MM-DD/rollup.parquet  aggregates (follow the statistics window)
 *   analytics/rollup_hourly/dt=YYYY-MM-DD/rollup.parquet
 *   analytics/rollup_processors_daily/dt=YYYY-MM-DD/rollup.parquet
 *   analytics/usage_daily/dt=YYYY-MM-DD/usage.parquet    usage for billing (statistics window)
 * A day is rewritten whole when it changed since the last export, or when its file is missing (the
 * purge deletes a day's facts file when it deletes facts of that day; the next export rewrites it
 * without them).
 */
export const PARQUET = {
  facts: (day: string) => `analytics/facts/dt=${day}/facts.parquet`,
  rollup_daily: (day: string) => `analytics/rollup_daily/dt=${day}/rollup.parquet`,
  rollup_hourly: (day: string) => `analytics/rollup_hourly/dt=${day}/rollup.parquet`,
  rollup_processors_daily: (day: string) => `analytics/rollup_processors_daily/dt=${day}/rollup.parquet`,
  usage_daily: (day: string) => `analytics/usage_daily/dt=${day}/usage.parquet`,
};
export const FACTS_PREFIX = 'analytics/facts/';

/**
 * The export's folders in the lake, for the purge: facts follow the images' window, rollups the
 * statistics window. Each holds `dt=YYYY-MM-DD/` partitions.
 */
export const PARQUET_AREAS = {
  facts: 'analytics/facts',
  rollups: [
    'analytics/rollup_daily',
    'analytics/rollup_hourly',
    'analytics/rollup_processors_daily',
    'analytics/usage_daily',
  ],
} as const;

/** The folder of one day's facts file. */
export const factsDayPrefix = (day: string) => `${FACTS_PREFIX}dt=${day}/`;

const COLUMNS = {
  facts: {
    image_id: 'UUID',
    customer_id: 'UUID',
    source: 'VARCHAR',
    format: 'VARCHAR',
    outcome: 'VARCHAR',
    error_code: 'VARCHAR',
    bytes: 'BIGINT',
    width: 'INTEGER',
    height: 'INTEGER',
    megapixels: 'DOUBLE',
    received_at: 'TIMESTAMPTZ',
    processed_at: 'TIMESTAMPTZ',
    day: 'DATE',
    queue_ms: 'INTEGER',
    processing_ms: 'INTEGER',
    processors: 'JSON',
    dimensions: 'JSON',
    labels: 'VARCHAR[]',
    processor_runs: 'JSON',
    updated_at: 'TIMESTAMPTZ',
  },
  rollup: {
    customer_id: 'UUID',
    format: 'VARCHAR',
    source: 'VARCHAR',
    outcome: 'VARCHAR',
    error_code: 'VARCHAR',
    images: 'BIGINT',
    bytes: 'BIGINT',
    megapixels: 'DOUBLE',
    queue_ms_sum: 'BIGINT',
    processing_ms_sum: 'BIGINT',
    latency_hist: 'INTEGER[]',
  },
} as const;

export interface ExportDeps {
  db: Db;
  lake: Lake;
  clock: Clock;
  log: Logger;
}

export interface ExportSummary {
  facts: string[];
  rollups: string[];
  usage: string[];
  files: number;
}

const WATERMARK = 'analytics_export_watermark';

export async function exportAnalytics(deps: ExportDeps): Promise<ExportSummary> {
  const { db, lake, clock, log } = deps;
  const started = clock.now();
  const mark = await getSetting(db, WATERMARK);
  const since = mark ? new Date(mark) : new Date(0);

  const changed = new Set(await changedDays(db, since));
  const factDays = await daysWithFacts(db);
  const rollupDaysToCheck = await rollupDays(db);
  const factsToWrite: string[] = [];
  for (const day of factDays)
    if (changed.has(day) || !(await lake.head(PARQUET.facts(day)))) factsToWrite.push(day);
  // Usage has no change stamp: a day is rewritten while it may still change (the watermark's day and
  // the day before it, which gets its bytes-held snapshot after it ends), or when its file is missing.
  const usageSince = utcDay(new Date(since.getTime() - 86_400_000));
  const usageToWrite: string[] = [];
  for (const day of await usageDays(db))
    if (day >= usageSince || !(await lake.head(PARQUET.usage_daily(day)))) usageToWrite.push(day);
  const rollupsToWrite: string[] = [];
  for (const day of rollupDaysToCheck)
    if (changed.has(day) || !(await lake.head(PARQUET.rollup_daily(day)))) rollupsToWrite.push(day);

  const work = await mkdtemp(join(tmpdir(), 'imagelake-export-'));
  // Loaded for the export only: DuckDB's bindings and native library would otherwise sit in every
  // process from its start (about 3 MB of heap and its native memory) for a job run once a day.
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const duck = await DuckDBInstance.create(':memory:');
  const connection = await duck.connect();
  let files = 0;
  try {
    const write = async (
      key: string,
      columns: Record<string, string>,
      rows: AsyncIterable<Record<string, unknown>>,
    ) => {
      const ndjson = join(work, 'rows.ndjson');
      const parquet = join(work, 'out.parquet');
      const out = createWriteStream(ndjson);
      for await (const row of rows) out.write(`${JSON.stringify(row)}\n`);
      out.end();
      await finished(out);
      const spec = Object.entries(columns)
        .map(([name, type]) => `${name}: '${type}'`)
        .join(', ');
      await connection.run(
        `copy (select * from read_json('${ndjson}', format = 'newline_delimited', columns = {${spec}})) to '${parquet}' (format parquet, compression zstd)`,
      );
      await lake.put(key, createReadStream(parquet), { contentType: 'application/vnd.apache.parquet' });
      files++;
    };
    for (const day of factsToWrite) {
      await write(
        PARQUET.facts(day),
        COLUMNS.facts,
        pages((offset, limit) => factsOfDay(db, day, offset, limit)),
      );
    }
    for (const day of rollupsToWrite) {
      await write(
        PARQUET.rollup_daily(day),
        { day: 'DATE', ...COLUMNS.rollup },
        pages((offset, limit) => rollupsOfDay.daily(db, day, offset, limit)),
      );
      await write(
        PARQUET.rollup_hourly(day),
        { hour: 'TIMESTAMPTZ', ...COLUMNS.rollup },
        pages((offset, limit) => rollupsOfDay.hourly(db, day, offset, limit)),
      );
      await write(
        PARQUET.rollup_processors_daily(day),
        {
          day: 'DATE',
          customer_id: 'UUID',
          processor: 'VARCHAR',
          version: 'VARCHAR',
          outcome: 'VARCHAR',
          runs: 'BIGINT',
          ms_sum: 'DOUBLE',
          latency_hist: 'INTEGER[]',
        },
        pages((offset, limit) => rollupsOfDay.processors(db, day, offset, limit)),
      );
    }
    for (const day of usageToWrite) {
      await write(
        PARQUET.usage_daily(day),
        {
          day: 'DATE',
          customer_id: 'UUID',
          images_received: 'BIGINT',
          bytes_received: 'BIGINT',
          images_processed: 'BIGINT',
          images_failed: 'BIGINT',
          processing_ms: 'BIGINT',
          cpu_ms: 'DOUBLE',
          processor_ms: 'JSON',
          bytes_held: 'BIGINT',
        },
        pages((offset, limit) => usageOfDay(db, day, offset, limit)),
      );
    }
  } finally {
    connection.closeSync();
    duck.closeSync();
    await rm(work, { recursive: true, force: true });
  }
  // Outcomes are stamped by the workers' clocks and committed a little later; going back ten
  // minutes costs a day rewritten twice at worst, never a fact missed.
  const watermark = new Date(started.getTime() - 10 * 60_000).toISOString();
  await putSetting(db, WATERMARK, watermark);
  if (files)
    log.info(
      { facts: factsToWrite.length, rollups: rollupsToWrite.length, usage: usageToWrite.length, files },
      'analytics exported to Parquet',
    );
  return { facts: factsToWrite, rollups: rollupsToWrite, usage: usageToWrite, files };
}

/** Reads a day's rows in pages of 5,000, so a busy day never sits in memory whole. */
async function* pages(
  read: (offset: number, limit: number) => Promise<Record<string, unknown>[]>,
): AsyncIterable<Record<string, unknown>> {
  for (let offset = 0; ; offset += 5000) {
    const rows = await read(offset, 5000);
    for (const row of rows) {
      yield Object.fromEntries(
        Object.entries(row).map(([k, v]) => [
          k,
          v instanceof Date ? v.toISOString() : typeof v === 'bigint' ? v.toString() : v,
        ]),
      );
    }
    if (rows.length < 5000) return;
  }
}
