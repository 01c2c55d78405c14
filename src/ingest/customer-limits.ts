import { getCustomer } from '../catalog/customers.ts';
import type { Db } from '../catalog/database.ts';
import { takeTokens } from '../catalog/rate-limits.ts';
import type { CustomerRow } from '../catalog/schema.ts';
import { AppError } from '../errors.ts';
import { type Bucket, policyItem, secondsUntil, stateItem } from './rate-limit.ts';

/** A customer's limits in force: its own settings, or the platform's defaults. 0: no limit. */
export interface EffectiveLimits {
  uploadsPerSecond: number;
  bytesPerSecond: number;
  monthlyImages: number;
  monthlyBytes: number;
  /** The customer's waiting images at most (its share of the queue). */
  queueShare: number;
}

/** The platform's defaults (the config's `limits`). */
export interface LimitDefaults {
  rateUploads: number;
  rateBytes: number;
  rateBurstSeconds: number;
  monthlyImages: number;
  monthlyBytes: number;
  maxQueueDepthPerCustomer: number;
}

/** A customer's own settings over the defaults (a null setting takes the default). */
export function effectiveLimits(row: CustomerRow | undefined, defaults: LimitDefaults): EffectiveLimits {
  const own = (value: number | string | null | undefined, fallback: number) =>
    value === null || value === undefined ? fallback : Number(value);
  return {
    uploadsPerSecond: own(row?.uploads_per_second, defaults.rateUploads),
    bytesPerSecond: own(row?.bytes_per_second, defaults.rateBytes),
    monthlyImages: own(row?.monthly_images, defaults.monthlyImages),
    monthlyBytes: own(row?.monthly_bytes, defaults.monthlyBytes),
    queueShare: own(row?.queue_share, defaults.maxQueueDepthPerCustomer),
  };
}

/** What an upload answer carries: the IETF RateLimit-Policy and RateLimit fields, and Retry-After on refusal. */
export type LimitHeaders = Record<string, string>;

/**
 * Per-customer limits, as the landing and the upload routes ask for them. A customer's settings are
 * read from the catalog at most once a second per process (an admin's change holds everywhere within
 * a second; at once in the process that made it). The rate limits' buckets live in the catalog
 * (`catalog/rate-limits.ts`), so every api process takes from the same ones.
 */
export class CustomerLimits {
  private readonly db: Db;
  private readonly defaults: LimitDefaults;
  private readonly cache = new Map<string, { at: number; limits: EffectiveLimits }>();

  constructor(db: Db, defaults: LimitDefaults) {
    this.db = db;
    this.defaults = defaults;
  }

  async of(customerId: string): Promise<EffectiveLimits> {
    const now = Date.now();
    const cached = this.cache.get(customerId);
    if (cached && now - cached.at < 1000) return cached.limits;
    const limits = effectiveLimits(await getCustomer(this.db, customerId), this.defaults);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(customerId, { at: now, limits });
    return limits;
  }

  /** Drops a customer's cached settings (after an admin changed them in this process). */
  forget(customerId: string): void {
    this.cache.delete(customerId);
  }

  private buckets(limits: EffectiveLimits): { uploads?: Bucket; bytes?: Bucket } {
    const seconds = this.defaults.rateBurstSeconds;
    return {
      ...(limits.uploadsPerSecond > 0
        ? {
            uploads: {
              rate: limits.uploadsPerSecond,
              burst: Math.max(1, limits.uploadsPerSecond * seconds),
            },
          }
        : {}),
      ...(limits.bytesPerSecond > 0
        ? { bytes: { rate: limits.bytesPerSecond, burst: limits.bytesPerSecond * seconds } }
        : {}),
    };
  }

  /**
   * Admits one upload under the customer's rate limits, or throws RATE_LIMITED. Either way `headers`
   * receives the RateLimit-Policy and RateLimit fields (and Retry-After on refusal). The bytes bucket
   * is checked first and charged later (`chargeBytes`), when the image's size is known: a customer in
   * byte debt is refused until it has refilled.
   */
  async admit(customerId: string, headers: LimitHeaders): Promise<void> {
    const limits = await this.of(customerId);
    const { uploads, bytes } = this.buckets(limits);
    if (!uploads && !bytes) return;
    const seconds = this.defaults.rateBurstSeconds;
    const policies: string[] = [];
    const states: string[] = [];
    let refusal: { retryAfter: number; detail: string } | undefined;
    if (bytes) {
      const taken = await takeTokens(this.db, customerId, 'bytes', bytes, 0, 0);
      policies.push(policyItem('bytes', bytes, seconds, true));
      states.push(stateItem('bytes', bytes, taken.tokens));
      if (!taken.granted)
        refusal = {
          retryAfter: secondsUntil(bytes, taken.tokens, 0),
          detail: `This customer may send ${limits.bytesPerSecond} bytes a second (a burst of ${Math.floor(bytes.burst)}).`,
        };
    }
    if (uploads) {
      policies.unshift(policyItem('uploads', uploads, seconds, false));
      if (refusal) {
        // Refused for its bytes: the uploads bucket is read (refilled, nothing taken) for the header.
        const left = await takeTokens(this.db, customerId, 'uploads', uploads, 0, 0);
        states.unshift(stateItem('uploads', uploads, left.tokens));
      } else {
        const taken = await takeTokens(this.db, customerId, 'uploads', uploads, 1, 1);
        states.unshift(stateItem('uploads', uploads, taken.tokens));
        if (!taken.granted)
          refusal = {
            retryAfter: secondsUntil(uploads, taken.tokens, 1),
            detail: `This customer may send ${limits.uploadsPerSecond} uploads a second (a burst of ${Math.floor(uploads.burst)}).`,
          };
      }
    }
    headers['ratelimit-policy'] = policies.join(', ');
    headers.ratelimit = states.join(', ');
    if (refusal) {
      headers['retry-after'] = String(refusal.retryAfter);
      throw new AppError('RATE_LIMITED', `${refusal.detail} Retry after ${refusal.retryAfter} s.`);
    }
  }

  /** Charges a landed image's bytes to the customer's byte bucket (nothing when it has no byte limit). */
  async chargeBytes(customerId: string, count: number): Promise<void> {
    const { bytes } = this.buckets(await this.of(customerId));
    if (bytes && count > 0) await takeTokens(this.db, customerId, 'bytes', bytes, count, -Number.MAX_VALUE);
  }
}
