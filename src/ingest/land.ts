// Over 350 lines: one landing's workflow (idempotency, limits, the body to the lake, the catalog's
// transaction, each refusal counted) shares the Lander's dependencies and metrics; split, it would
// scatter one sequence whose order is the guarantee (bytes durable before the row that names them).
import { createHash, randomUUID, webcrypto } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { addReceived } from '../analytics/usage.ts';
import { duplicatePolicyOf } from '../catalog/customers.ts';
import type { Db } from '../catalog/database.ts';
import {
  countWaiting,
  findByIdempotencyKey,
  firstWithChecksum,
  getImage,
  insertImage,
} from '../catalog/images.ts';
import { lockContent } from '../catalog/locks.ts';
import { depth, enqueue, reserveVirtualTime } from '../catalog/queue.ts';
import { countLanding, usageOf } from '../catalog/quota-usage.ts';
import type { ImageRow, ImageSource, JobPriority } from '../catalog/schema.ts';
import { isCatalogUnavailable } from '../catalog/unavailable.ts';
import type { Clock } from '../clock.ts';
import { AppError } from '../errors.ts';
import { rawKey } from '../lake/object-keys.ts';
import type { Lake } from '../lake/port.ts';
import type { Metrics } from '../observability/metrics.ts';
import { activeTraceId, imageAttributes, inSpan, traceparentOf } from '../observability/tracing.ts';
import { announceImage } from '../webhooks/events.ts';
import type { EffectiveLimits } from './customer-limits.ts';
import { LandingGroup, type Recording } from './land-group.ts';
import { EXTENSION, type ImageFormat, SNIFF_BYTES, sniff } from './sniff.ts';

export interface LandDeps {
  db: Db;
  lake: Lake;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  limits: { maxBytes: number; maxQueueDepth: number };
  maxAttempts: number;
  /** The platform's retention window: an image.received webhook says when the image expires. */
  retentionMs: number;
  /** A customer's limits in force (queue share, monthly quotas); without it only the global limits hold. */
  customerLimits?: { of(customerId: string): Promise<EffectiveLimits> };
}

export interface LandInput {
  customerId: string;
  source: ImageSource;
  body: Readable | Buffer;
  idempotencyKey?: string | undefined;
  filename?: string | undefined;
  /** 'bulk' for a backfill: processed only when no interactive work waits. Default 'interactive'. */
  priority?: JobPriority | undefined;
  /**
   * The idempotency key is not looked up before the lake write: one that landed before is found
   * when its row would be written. For a source that rarely sees a landing again (Kafka: a
   * redelivery follows only a crash or a rebalance), so the lookup is not paid on every message.
   */
  keyCheckedAtInsert?: boolean | undefined;
  /**
   * Called once the bytes are durable in the lake, before the catalog's transaction: a source with
   * many bodies in hand (Kafka) writes its next ones meanwhile, rather than holding a write's place
   * while the landing waits for its group's commit.
   */
  onStored?: (() => void) | undefined;
}

/** What goes to the lake: the format the first bytes showed, and the body, checked as it is written. */
interface Landing {
  format: ImageFormat;
  body: Buffer | Readable;
}

export interface Landed {
  image: ImageRow;
  /** True when the idempotency key had landed before: nothing new was written. */
  duplicate: boolean;
}

/**
 * Lands one image, whatever its source: streams the bytes into the lake (checking the format on
 * the first bytes and the size on every chunk), then records the image and queues its processing
 * in one transaction, shared with the customer's other landings of the moment (land-group.ts). A
 * retry with the same idempotency key and the same bytes returns the first landing; the same key
 * with other bytes is refused with IDEMPOTENCY_KEY_REUSED.
 */
export class Lander {
  private readonly deps: LandDeps;
  private readonly group: LandingGroup;
  private depthCache = { at: 0, value: 0 };

  constructor(deps: LandDeps) {
    this.deps = deps;
    this.group = new LandingGroup(deps);
  }

  /** One span per landing, in the request's or the Kafka message's trace; its job continues it. */
  async land(input: LandInput): Promise<Landed> {
    return inSpan(
      'imagelake.land',
      {
        attributes: {
          'imagelake.customer.id': input.customerId,
          'imagelake.image.source': input.source,
          'imagelake.job.priority': input.priority ?? 'interactive',
        },
      },
      async (span) => {
        const landed = await this.landTraced(input);
        const { image } = landed;
        span.setAttributes(
          imageAttributes({
            id: image.id,
            customerId: image.customer_id,
            format: image.format,
            bytes: Number(image.bytes),
          }),
        );
        span.setAttribute('imagelake.land.duplicate', landed.duplicate);
        return landed;
      },
    );
  }

  private async landTraced(input: LandInput): Promise<Landed> {
    const { db, lake, clock } = this.deps;
    if (input.idempotencyKey && !input.keyCheckedAtInsert) {
      const existing = await findByIdempotencyKey(db, input.customerId, input.idempotencyKey);
      if (existing) return this.replay(input, existing, await this.checksumOf(input));
    }
    const limits = await this.checkLimits(input);

    const id = randomUUID();
    const receivedAt = clock.now();
    const hash = createHash('sha256');
    let bytes = 0;
    const { maxBytes } = this.deps.limits;
    const take = (chunk: Buffer): Buffer => {
      bytes += chunk.length;
      if (bytes > maxBytes) throw tooLarge(maxBytes);
      hash.update(chunk);
      return chunk;
    };
    // A body already in memory (a Kafka message's value) is checked and written whole, and hashed
    // beside its write, off the event loop; a stream is sniffed on its first bytes, then checked and
    // hashed chunk by chunk on its way.
    let whole: Promise<string> | undefined;
    let landing: Landing;
    if (Buffer.isBuffer(input.body)) {
      landing = this.whole(input, input.body);
      bytes = input.body.length;
      whole = sha256Hex(input.body);
      // Awaited after the write; should the write fail first, its end is of no interest.
      whole.catch(() => {});
    } else landing = await this.streamed(input, input.body, take);
    const { format, body } = landing;

    const key = rawKey({ imageId: id, customerId: input.customerId, receivedAt }, EXTENSION[format]);
    try {
      await lake.put(key, body);
    } catch (error) {
      if (error instanceof AppError) throw this.reject(input, error);
      throw new AppError('LAKE_UNAVAILABLE', undefined, { cause: error });
    }
    input.onStored?.();

    const checksum = whole ? await whole : hash.digest('hex');
    const recording: Recording = {
      row: {
        id,
        customer_id: input.customerId,
        source: input.source,
        status: 'received' as const,
        idempotency_key: input.idempotencyKey ?? null,
        filename: input.filename?.slice(0, 255) ?? null,
        checksum,
        bytes,
        format,
        raw_key: key,
        received_at: receivedAt,
        trace_id: activeTraceId(),
      },
      priority: input.priority ?? 'interactive',
      traceparent: traceparentOf(),
      quota: {
        images: limits?.monthlyImages || Number.POSITIVE_INFINITY,
        bytes: limits?.monthlyBytes || Number.POSITIVE_INFINITY,
      },
    };
    try {
      // Recorded with the customer's other landings of the moment, in one transaction (group
      // commit: land-group.ts); a lone landing starts its transaction at once.
      const image = await this.group.record(recording, () => this.recordAlone(input, limits, recording));
      return this.accepted(input, image);
    } catch (error) {
      // The connection went while recording (PostgreSQL restarting, the network): the commit may
      // have landed though its answer was lost, so this landing's own row may be there.
      const ambiguous = isCatalogUnavailable(error);
      if (ambiguous || (error as { code?: string }).code === '23505') {
        const own = await getImage(db, id).catch(() => undefined);
        if (own?.raw_key === key) return this.accepted(input, own);
      }
      // Another landing with the same key won the race, or landed before: answer with its landing.
      const existing =
        input.idempotencyKey &&
        ((error as { code?: string }).code === '23505' || error instanceof LandedBefore)
          ? await findByIdempotencyKey(db, input.customerId, input.idempotencyKey)
          : undefined;
      // A group whose commit landed though its answer was lost: the row is this landing's own.
      if (existing?.raw_key === key) return this.accepted(input, existing);
      // The catalog said no (a refusal, a conflict): nothing was recorded, and the object must not
      // stay behind as an orphan. Not when the connection went: its row may have committed, or may
      // yet (the look above found nothing, or could not look), and deleting its bytes then lost an
      // image answered 202 on a retry. Left there, an orphan goes with its day's partition.
      if (!ambiguous) await lake.delete(key).catch(() => {});
      if (existing) return this.replay(input, existing, checksum);
      throw error;
    }
  }

  private accepted(input: LandInput, image: ImageRow): Landed {
    this.deps.metrics.ingested.inc({ source: input.source, outcome: 'accepted' });
    this.deps.metrics.ingestedBytes.inc({ source: input.source }, Number(image.bytes));
    return { image, duplicate: false };
  }

  /** A landing's catalog row, job, webhook deliveries and counts, in one transaction of its own. */
  private async record(
    input: LandInput,
    limits: EffectiveLimits | undefined,
    recording: Recording,
  ): Promise<ImageRow> {
    const { db } = this.deps;
    const { row } = recording;
    const vt = recording.vt ?? (await reserveVirtualTime(db, input.customerId, recording.priority));
    return db.transaction().execute(async (trx) => {
      const flagged = await this.checkDuplicate(trx, input, row.checksum);
      const inserted = await insertImage(trx, { ...row, duplicate_flagged: flagged });
      await announceImage(
        trx,
        'image.received',
        { id: row.id, customerId: input.customerId },
        row.received_at,
        this.deps.retentionMs,
      );
      await enqueue(
        trx,
        {
          imageId: row.id,
          customerId: input.customerId,
          priority: recording.priority,
          traceparent: recording.traceparent,
          vt,
        },
        this.deps.maxAttempts,
      );
      // Counted in the landing's transaction: the month's usage and the image commit together.
      // Last, since their rows (or a quota's lock) are held until the commit and other landings
      // of the customer may want them.
      const counted = await countLanding(trx, input.customerId, row.received_at, row.bytes, recording.quota);
      if (!counted) throw this.reject(input, quotaExceeded(limits!, 'this image'));
      await addReceived(trx, { customerId: input.customerId, receivedAt: row.received_at, bytes: row.bytes });
      return inserted;
    });
  }

  /**
   * A landing its group could not take, recorded alone. Its idempotency key is looked up first (it
   * may have skipped that before the write, or another landing may have taken it since): a key
   * landed before answers with that landing, as it would have before the write (and a duplicates
   * policy of "reject" does not refuse its own redelivery).
   */
  private async recordAlone(
    input: LandInput,
    limits: EffectiveLimits | undefined,
    recording: Recording,
  ): Promise<ImageRow> {
    if (
      input.idempotencyKey &&
      (await findByIdempotencyKey(this.deps.db, input.customerId, input.idempotencyKey))
    )
      throw new LandedBefore();
    return this.record(input, limits, recording);
  }

  private whole(input: LandInput, body: Buffer): Landing {
    if (body.length === 0) throw this.reject(input, new AppError('EMPTY_BODY'));
    const format = sniff(body.subarray(0, SNIFF_BYTES));
    if (!format) throw this.reject(input, new AppError('UNSUPPORTED_FORMAT'));
    const { maxBytes } = this.deps.limits;
    if (body.length > maxBytes) throw this.reject(input, tooLarge(maxBytes));
    return { format, body };
  }

  private async streamed(
    input: LandInput,
    stream: Readable,
    take: (chunk: Buffer) => Buffer,
  ): Promise<Landing> {
    const chunks = stream[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let headBytes = 0;
    let ended = false;
    while (headBytes < SNIFF_BYTES) {
      const next = await chunks.next().catch((error) => {
        throw error instanceof AppError ? this.reject(input, error) : error;
      });
      if (next.done) {
        ended = true;
        break;
      }
      const chunk = asBuffer(next.value);
      head.push(chunk);
      headBytes += chunk.length;
    }
    if (headBytes === 0) throw this.reject(input, new AppError('EMPTY_BODY'));
    // The first SNIFF_BYTES, as a body in memory is sniffed; a view when the first chunk holds them
    // (it is often 64 KB, which concatenating would copy).
    const first = head[0]!;
    const format = sniff(
      first.length >= SNIFF_BYTES
        ? first.subarray(0, SNIFF_BYTES)
        : Buffer.concat(head).subarray(0, SNIFF_BYTES),
    );
    if (!format) throw this.reject(input, new AppError('UNSUPPORTED_FORMAT'));
    async function* everything(): AsyncGenerator<Buffer> {
      for (const chunk of head) yield take(chunk);
      while (!ended) {
        const next = await chunks.next();
        if (next.done) break;
        yield take(asBuffer(next.value));
      }
    }
    return { format, body: Readable.from(everything()) };
  }

  /**
   * The refusals a landing would meet before its first byte (queue depth, the customer's queue share
   * and monthly quota), for a source that takes bytes over a long time before landing them (a
   * resumable upload): refused when it starts rather than after gigabytes.
   */
  async admit(customerId: string, source: ImageSource = 'http'): Promise<void> {
    await this.checkLimits({ customerId, source, body: Buffer.alloc(0) });
  }

  private async checkLimits(input: LandInput): Promise<EffectiveLimits | undefined> {
    const limits = await this.deps.customerLimits?.of(input.customerId);
    // Kafka is held back by its consumer's pause on the whole queue instead: refusing one customer's
    // message would stall its partition, and every other customer's messages behind it.
    // Counted only as far as the limits below look: the customer's share, or the reserve a full
    // queue still lets in.
    const enough = limits ? Math.max(limits.queueShare, this.queueReserve) : 0;
    const waiting =
      limits && input.source !== 'kafka'
        ? await countWaiting(this.deps.db, input.customerId, enough)
        : undefined;
    await this.checkQueueDepth(input, waiting);
    if (limits) {
      if (waiting !== undefined) this.checkQueueShare(input, limits, waiting);
      await this.checkQuota(input, limits);
    }
    return limits;
  }

  /**
   * A key seen before answers with its first landing only for the same bytes: a key reused for
   * other bytes is refused rather than silently dropping the new image (as Stripe and the IETF
   * Idempotency-Key draft do).
   */
  private replay(input: LandInput, existing: ImageRow, checksum: string): Landed {
    if (checksum !== existing.checksum) {
      throw this.reject(
        input,
        new AppError(
          'IDEMPOTENCY_KEY_REUSED',
          `It was first used for image ${existing.id} (sha256 ${existing.checksum}).`,
        ),
      );
    }
    this.deps.metrics.ingested.inc({ source: input.source, outcome: 'duplicate' });
    return { image: existing, duplicate: true };
  }

  /** The SHA-256 of a body that will not be stored, read under the same limits as one that is. */
  private async checksumOf(input: LandInput): Promise<string> {
    const hash = createHash('sha256');
    let bytes = 0;
    const { maxBytes } = this.deps.limits;
    const chunks = (Buffer.isBuffer(input.body) ? Readable.from([input.body]) : input.body)[
      Symbol.asyncIterator
    ]();
    try {
      for (;;) {
        const next = await chunks.next();
        if (next.done) break;
        const chunk = asBuffer(next.value);
        bytes += chunk.length;
        if (bytes > maxBytes) throw tooLarge(maxBytes);
        hash.update(chunk);
      }
    } catch (error) {
      throw error instanceof AppError ? this.reject(input, error) : error;
    }
    if (bytes === 0) throw this.reject(input, new AppError('EMPTY_BODY'));
    return hash.digest('hex');
  }

  /**
   * The customer's duplicates policy, decided in the landing's transaction: "reject" refuses bytes it
   * already has (DUPLICATE_IMAGE, naming the image), "flag" marks the new image, "accept" does
   * nothing here (GET /v1/images/{id} says duplicateOf either way). Two landings of the same bytes at
   * once take turns on a lock of that customer's checksum, so the second sees the first.
   */
  private async checkDuplicate(trx: Db, input: LandInput, checksum: string): Promise<boolean> {
    const policy = await duplicatePolicyOf(trx, input.customerId);
    if (policy === 'accept') return false;
    await lockContent(trx, input.customerId, checksum);
    const first = await firstWithChecksum(trx, input.customerId, checksum);
    if (!first) return false;
    if (policy === 'reject')
      throw this.reject(
        input,
        new AppError('DUPLICATE_IMAGE', `Image ${first} has the same bytes (sha256 ${checksum}).`),
      );
    return true;
  }

  private reject(input: LandInput, error: AppError): AppError {
    this.deps.metrics.ingested.inc({ source: input.source, outcome: 'rejected' });
    this.deps.metrics.rejected.inc({ source: input.source, code: error.code });
    return error;
  }

  /**
   * A customer's own share of the queue: past it, its uploads are refused and other customers' are
   * not. Counted on every landing, so every api process sees the others' landings at once: the
   * partial index images_waiting_by_customer holds only waiting images, so the count reads that
   * customer's waiting ones (at most its share) and nothing else.
   */
  private checkQueueShare(input: LandInput, limits: EffectiveLimits, waiting: number): void {
    if (waiting >= limits.queueShare) {
      throw this.reject(
        input,
        new AppError(
          'QUEUE_FULL',
          `This customer's own share of the queue is full: at least ${waiting} of its images are waiting, and its share is ${limits.queueShare}. Other customers are not affected.`,
        ),
      );
    }
  }

  /** Refuses early, before any byte is stored, a customer whose month is used up already. */
  private async checkQuota(input: LandInput, limits: EffectiveLimits): Promise<void> {
    if (!limits.monthlyImages && !limits.monthlyBytes) return;
    const usage = await usageOf(this.deps.db, input.customerId, this.deps.clock.now());
    if (
      (limits.monthlyImages && usage.images >= limits.monthlyImages) ||
      (limits.monthlyBytes && usage.bytes >= limits.monthlyBytes)
    ) {
      throw this.reject(
        input,
        quotaExceeded(
          limits,
          `${usage.images} images (${usage.bytes} bytes) landed in ${usage.month.slice(0, 7)}, so another`,
        ),
      );
    }
  }

  /**
   * The whole queue's limit (IMAGELAKE_MAX_QUEUE_DEPTH), a valve for the catalog. When it is reached
   * it refuses those who fill it: a customer with fewer than a hundredth of it waiting (100 by
   * default) still lands, so customers sending a few images are never refused because others'
   * backfills (or a Kafka backlog) filled the queue. `waiting` is the customer's own count, known
   * for HTTP uploads; a Kafka message is refused by the whole count (its consumer pauses first).
   */
  /** When the whole queue is full, a customer with fewer images than this waiting still lands. */
  private get queueReserve(): number {
    return Math.ceil(this.deps.limits.maxQueueDepth / 100);
  }

  private async checkQueueDepth(input: LandInput, waiting: number | undefined): Promise<void> {
    // Counting the queue on every upload would cost a query each; a one-second-old count is enough to push back.
    const now = Date.now();
    if (now - this.depthCache.at > 1000) {
      const d = await depth(this.deps.db);
      this.depthCache = { at: now, value: d.queued + d.running };
    }
    const max = this.deps.limits.maxQueueDepth;
    if (this.depthCache.value < max) return;
    const reserve = this.queueReserve;
    if (waiting !== undefined && waiting < reserve) return;
    // A Kafka message is not refused for good: its consumer waits and lands it later.
    if (waiting === undefined)
      throw new AppError('QUEUE_FULL', `${this.depthCache.value} images are waiting.`);
    throw this.reject(
      input,
      new AppError(
        'QUEUE_FULL',
        `The whole queue is full (${this.depthCache.value} images waiting) and this customer has at least ${waiting} of them; a customer with fewer than ${reserve} waiting still lands.`,
      ),
    );
  }
}

/** A group-committed landing's idempotency key landed before: it answers with that landing. */
class LandedBefore extends Error {}

function quotaExceeded(limits: EffectiveLimits, what: string): AppError {
  const parts = [
    limits.monthlyImages ? `${limits.monthlyImages} images` : undefined,
    limits.monthlyBytes ? `${limits.monthlyBytes} bytes` : undefined,
  ].filter(Boolean);
  return new AppError(
    'QUOTA_EXCEEDED',
    `This customer's monthly quota is ${parts.join(' and ')} (UTC month); ${what} would go over it.`,
  );
}

// Buffer.from(buffer) would copy every chunk of every upload; a view over the same memory is enough.
function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  const bytes = chunk as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function tooLarge(maxBytes: number): AppError {
  return new AppError('IMAGE_TOO_LARGE', `The limit is ${maxBytes} bytes.`);
}

/**
 * The SHA-256 of a body in memory, in hex, computed on libuv's threads (WebCrypto's digest runs
 * there) rather than on the event loop: a Kafka landing's event loop spent a fifth of its time
 * hashing (1.1 ms for a 1.5 MB photo), time in which it could not fetch, write or record the next
 * messages. WebCrypto copies the body first (about a tenth of the hashing's time).
 */
async function sha256Hex(body: Buffer): Promise<string> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', body)).toString('hex');
}
