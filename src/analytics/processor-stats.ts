import { type RawBuilder, sql } from 'kysely';
import type { Db } from '../catalog/database.ts';
import { LATENCY_BUCKET_COUNT, percentile } from './histogram.ts';

/**
 * How the company's processors fared over a range of landing days: runs, failures by code, time
 * taken, versions, and a per-day series. Read from analytics.rollup_processors_daily, which keeps
 * every image's final attempt (and each reprocess run) for the statistics window, long after the
 * images themselves are purged.
 */

/** A processor skipped because one it runs after failed: listed apart, not counted as a run. */
const SKIPPED = 'PROCESSOR_SKIPPED';

export interface ProcessorStats {
  name: string;
  /** Runs, ok or failed; skipped ones are not runs. */
  runs: number;
  ok: number;
  failed: number;
  skipped: number;
  /** failed / runs, 0 when it never ran. */
  failureRate: number;
  avgMs: number | null;
  p50Ms: number | null;
  p90Ms: number | null;
  /** Failures by code, most first. */
  errors: Array<{ code: string; runs: number }>;
  /** Runs by version, most first. */
  versions: Array<{ version: string; runs: number }>;
}

export interface ProcessorStatsAnswer {
  from: string;
  to: string;
  processors: ProcessorStats[];
  overTime: Array<{ day: string; processor: string; runs: number; failed: number }>;
}

export async function processorStats(
  db: Db,
  f: { from: string; to: string; customerId?: string },
): Promise<ProcessorStatsAnswer> {
  const where: RawBuilder<unknown>[] = [sql`day between ${f.from}::date and ${f.to}::date`];
  if (f.customerId) where.push(sql`customer_id = ${f.customerId}::uuid`);
  const range = sql.join(where, sql` and `);
  const [totals, histograms, days] = await Promise.all([
    sql<{ processor: string; version: string; outcome: string; runs: number; ms: number }>`
      select processor, version, outcome, sum(runs)::int as runs, sum(ms_sum)::float8 as ms
      from analytics.rollup_processors_daily where ${range}
      group by 1, 2, 3`.execute(db),
    sql<{ processor: string; hist: number[] }>`
      select processor, array_agg(v order by n) as hist from (
        select processor, h.n, sum(h.v)::int as v
        from analytics.rollup_processors_daily, unnest(latency_hist) with ordinality as h(v, n)
        where ${range} and outcome <> ${SKIPPED}
        group by 1, 2
      ) s group by 1`.execute(db),
    sql<{ day: string; processor: string; runs: number; failed: number }>`
      select day, processor,
             (sum(runs) filter (where outcome <> ${SKIPPED}))::int as runs,
             (sum(runs) filter (where outcome not in ('ok', ${SKIPPED})))::int as failed
      from analytics.rollup_processors_daily where ${range}
      group by 1, 2 having sum(runs) filter (where outcome <> ${SKIPPED}) > 0
      order by 1, 2`.execute(db),
  ]);

  const byName = new Map<
    string,
    ProcessorStats & { msSum: number; errorMap: Map<string, number>; versionMap: Map<string, number> }
  >();
  for (const row of totals.rows) {
    let p = byName.get(row.processor);
    if (!p) {
      p = {
        name: row.processor,
        runs: 0,
        ok: 0,
        failed: 0,
        skipped: 0,
        failureRate: 0,
        avgMs: null,
        p50Ms: null,
        p90Ms: null,
        errors: [],
        versions: [],
        msSum: 0,
        errorMap: new Map(),
        versionMap: new Map(),
      };
      byName.set(row.processor, p);
    }
    if (row.outcome === SKIPPED) {
      p.skipped += row.runs;
      continue;
    }
    p.runs += row.runs;
    p.msSum += row.ms;
    if (row.outcome === 'ok') p.ok += row.runs;
    else {
      p.failed += row.runs;
      p.errorMap.set(row.outcome, (p.errorMap.get(row.outcome) ?? 0) + row.runs);
    }
    if (row.version) p.versionMap.set(row.version, (p.versionMap.get(row.version) ?? 0) + row.runs);
  }
  const hist = new Map(histograms.rows.map((r) => [r.processor, r.hist]));
  const ranked = <K extends string>(map: Map<string, number>, key: K) =>
    [...map]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([k, runs]) => ({ [key]: k, runs }) as Record<K, string> & { runs: number });
  const processors = [...byName.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map(({ msSum, errorMap, versionMap, ...p }) => {
      const h = hist.get(p.name) ?? new Array(LATENCY_BUCKET_COUNT).fill(0);
      return {
        ...p,
        failureRate: p.runs ? p.failed / p.runs : 0,
        avgMs: p.runs ? Math.round((msSum / p.runs) * 10) / 10 : null,
        p50Ms: percentile(h, 0.5),
        p90Ms: percentile(h, 0.9),
        errors: ranked(errorMap, 'code'),
        versions: ranked(versionMap, 'version'),
      };
    });
  return { from: f.from, to: f.to, processors, overTime: days.rows };
}
