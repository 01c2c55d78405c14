/**
 * Token buckets, as arithmetic: what `catalog/rate-limits.ts` `takeTokens` computes in one SQL
 * statement, written out here so it can be unit-tested and so the answers' headers (RateLimit,
 * RateLimit-Policy, Retry-After) follow from the same numbers.
 *
 * A bucket holds up to `burst` tokens and refills at `rate` tokens a second. A request that needs
 * `need` tokens is granted when the bucket holds at least that many, and then pays `cost` (the
 * uploads bucket: need = cost = 1; the bytes bucket: need = 0 past any debt, cost = the bytes, paid
 * once they are in, so one image larger than the burst still lands and the customer then waits).
 */
export interface Bucket {
  /** Tokens a second (uploads, or bytes). */
  rate: number;
  /** The most tokens the bucket holds: rate x the burst seconds. */
  burst: number;
}

export interface BucketState {
  tokens: number;
  /** Milliseconds since the epoch of the last update. */
  at: number;
}

/** The tokens after refilling from `state` to `now` (a new bucket starts full). */
export function refill(bucket: Bucket, state: BucketState | undefined, now: number): number {
  if (!state) return bucket.burst;
  return Math.min(bucket.burst, state.tokens + (Math.max(0, now - state.at) / 1000) * bucket.rate);
}

/** Takes `cost` tokens if `need` are there; the new state and whether it was granted. */
export function takeTokens(
  bucket: Bucket,
  state: BucketState | undefined,
  now: number,
  cost: number,
  need: number,
): { granted: boolean; state: BucketState } {
  const tokens = refill(bucket, state, now);
  const granted = tokens >= need;
  return {
    granted,
    state: { tokens: granted ? tokens - cost : tokens, at: Math.max(state?.at ?? now, now) },
  };
}

/** Whole seconds until `need` tokens are there again (at least 1, for Retry-After). */
export function secondsUntil(bucket: Bucket, tokens: number, need: number): number {
  if (tokens >= need) return 0;
  return Math.max(1, Math.ceil((need - tokens) / bucket.rate));
}

/**
 * The bucket as draft-ietf-httpapi-ratelimit-headers-10 items: the policy (`q` units in `w` seconds:
 * the burst, refilled over the burst seconds) and the state (`r` units left now, `t` seconds until
 * the bucket is full again).
 */
export function policyItem(name: string, bucket: Bucket, burstSeconds: number, bytes: boolean): string {
  return `"${name}";q=${Math.floor(bucket.burst)};w=${burstSeconds}${bytes ? ';qu="content-bytes"' : ''}`;
}

export function stateItem(name: string, bucket: Bucket, tokens: number): string {
  const remaining = Math.max(0, Math.floor(tokens));
  const reset = tokens >= bucket.burst ? 0 : Math.ceil((bucket.burst - tokens) / bucket.rate);
  return `"${name}";r=${remaining};t=${reset}`;
}
