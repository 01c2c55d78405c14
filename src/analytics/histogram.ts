/**
 * Processing latency is kept in every rollup row as a histogram over fixed buckets, so percentiles
 * can be read for any slice (customer, format, range) by adding histograms: exact counts, percentiles
 * within a bucket's width.
 */
export const LATENCY_BUCKETS_MS = [
  10,
  20,
  50,
  100,
  200,
  300,
  500,
  750,
  1000,
  1500,
  2000,
  3000,
  5000,
  7500,
  10000,
  20000,
  30000,
  60000,
  Number.POSITIVE_INFINITY,
];

/**
 * The length of every latency_hist array (PostgreSQL and Parquet). The migrations that made the
 * columns keep their own literal 19: a migration never imports application code.
 */
export const LATENCY_BUCKET_COUNT = LATENCY_BUCKETS_MS.length;

/** 1-based, as PostgreSQL arrays are. */
export function bucketOf(ms: number): number {
  const index = LATENCY_BUCKETS_MS.findIndex((upper) => ms <= upper);
  return (index === -1 ? LATENCY_BUCKETS_MS.length - 1 : index) + 1;
}

/** The q-quantile (0..1) of a histogram, interpolated linearly inside its bucket. */
export function percentile(histogram: number[], q: number): number | null {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    const count = histogram[i] ?? 0;
    if (count > 0 && seen + count >= rank) {
      const lower = i === 0 ? 0 : LATENCY_BUCKETS_MS[i - 1]!;
      const upper = Number.isFinite(LATENCY_BUCKETS_MS[i]!) ? LATENCY_BUCKETS_MS[i]! : lower * 2;
      return Math.round(lower + ((rank - seen) / count) * (upper - lower));
    }
    seen += count;
  }
  return LATENCY_BUCKETS_MS.at(-2)!;
}

export function addHistograms(a: number[], b: number[]): number[] {
  const out = new Array(Math.max(a.length, b.length)).fill(0);
  for (let i = 0; i < out.length; i++) out[i] = (a[i] ?? 0) + (b[i] ?? 0);
  return out;
}
