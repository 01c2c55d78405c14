import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

// pg returns bigint as string to avoid precision loss; we read it as string and convert where summed.
type BigInt = ColumnType<string, number | bigint | string, number | bigint | string>;
type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Json<T> = ColumnType<T, string, string>;

export type ImageStatus = 'received' | 'processing' | 'processed' | 'failed';
export type ImageSource = 'http' | 'kafka';
export type KeyRole = 'admin' | 'customer' | 'analyst';

export interface Rendition {
  name: string;
  format: string;
  width: number;
  height: number;
  bytes: number;
  key: string;
}

export interface CustomersTable {
  id: string;
  name: string;
  created_at: Generated<Date>;
  /** A shorter retention window than the platform's, or null for the platform's. */
  retention_ms: ColumnType<string | null, number | null | undefined, number | null>;
  /** Per-customer limits (0021): null is the platform's default from the config; 0 is no limit. */
  uploads_per_second: ColumnType<number | null, number | null | undefined, number | null>;
  bytes_per_second: ColumnType<string | null, number | null | undefined, number | null>;
  monthly_images: ColumnType<string | null, number | null | undefined, number | null>;
  monthly_bytes: ColumnType<string | null, number | null | undefined, number | null>;
  queue_share: ColumnType<number | null, number | null | undefined, number | null>;
  /** The customer's share of the workers against other customers' (1 to 1000; default 1). */
  weight: Generated<number>;
  /** What an exact re-upload (same bytes as an image in retention) meets (0026). */
  duplicates: Generated<DuplicatePolicy>;
}

export type DuplicatePolicy = 'accept' | 'flag' | 'reject';

/** One token bucket of a customer's rate limits (owner: catalog/rate-limits.ts). */
export interface RateBucketsTable {
  customer_id: string;
  name: string;
  tokens: number;
  updated_at: Timestamp;
  granted: boolean;
}

/** A customer's landings in one UTC month, for its quotas (owner: catalog/quota-usage.ts). */
export interface QuotaUsageTable {
  customer_id: string;
  /** The first day of the month, 'YYYY-MM-01'. */
  month: ColumnType<string, string, string>;
  images: BigInt;
  bytes: BigInt;
  /** One of the month's rows (catalog/counter-slots.ts); the month's usage is their sum. */
  slot: Generated<number>;
}

export interface ApiKeysTable {
  id: string;
  role: KeyRole;
  customer_id: string | null;
  name: string;
  hash: string;
  prefix: string;
  created_at: Generated<Date>;
  revoked_at: Date | null;
}

export interface ImagesTable {
  id: string;
  customer_id: string;
  source: ImageSource;
  status: ImageStatus;
  idempotency_key: string | null;
  filename: string | null;
  checksum: string;
  bytes: BigInt;
  format: string;
  raw_key: string;
  received_at: Timestamp;
  processed_at: Timestamp | null;
  width: number | null;
  height: number | null;
  metadata: Json<Record<string, unknown>> | null;
  renditions: Json<Rendition[]> | null;
  phash: string | null;
  processors: Json<Record<string, string>> | null;
  error_code: string | null;
  error_message: string | null;
  queue_ms: number | null;
  processing_ms: number | null;
  /** The trace of the image's landing (admins see it on GET /v1/images/{id}); null untraced. */
  trace_id: Generated<string | null>;
  /** The customer's policy "flag" caught it: an exact or near duplicate of an earlier image (0026). */
  duplicate_flagged: Generated<boolean>;
}

/** The similarity index: one row per processed image (owner: catalog/image-hashes.ts, 0026). */
export interface ImageHashesTable {
  image_id: string;
  customer_id: string;
  sha256: string;
  /** The 64-bit perceptual hash as a signed bigint (pg returns it as a string). */
  phash: ColumnType<string, string, string>;
  /** The hash's four 16-bit bands; null for a flat image, which no near search may find. */
  b0: number | null;
  b1: number | null;
  b2: number | null;
  b3: number | null;
  landed_at: Timestamp;
  /** No structure to hash (a flat colour): left out of near searches, exact only. */
  flat: Generated<boolean>;
  /** The earlier image with the same bytes it matched when processed. */
  exact_of: string | null;
  /** The nearest earlier image with other bytes within the near distance, when processed. */
  near_of: string | null;
  near_distance: number | null;
}

export interface JobsTable {
  id: Generated<string>;
  kind: string;
  image_id: string;
  state: 'queued' | 'running';
  attempts: Generated<number>;
  max_attempts: number;
  run_at: Timestamp;
  lease_token: string | null;
  lease_until: Timestamp | null;
  last_error: string | null;
  created_at: Generated<Date>;
  /** Set for a reprocess job: the one processor to run. */
  processor: string | null;
  run_id: string | null;
  /** The image's customer: the claim takes customers in turn. */
  customer_id: string;
  /** Interactive jobs are claimed before any bulk job (backfills, Kafka bulk topics, reprocess runs). */
  priority: JobPriority;
  /** W3C traceparent of the span that queued the job; the job's span continues it. Null untraced. */
  traceparent: Generated<string | null>;
  /** Virtual time: within a priority, jobs are claimed in vt order (catalog/queue.ts says how it is stamped). */
  vt: number;
}

export type JobPriority = 'interactive' | 'bulk';

/** Each customer's last virtual time per priority (catalog/queue.ts). */
export interface QueueSharesTable {
  customer_id: string;
  priority: JobPriority;
  last_vt: number;
}

export interface ReprocessRunsTable {
  id: Generated<string>;
  processor: string;
  customer_id: string | null;
  since: Timestamp | null;
  force: boolean;
  status: 'running' | 'done' | 'cancelled';
  total: number;
  queued: Generated<number>;
  updated: Generated<number>;
  skipped: Generated<number>;
  failed: Generated<number>;
  cursor_received_at: Timestamp | null;
  cursor_id: string | null;
  created_at: Timestamp;
  finished_at: Timestamp | null;
}

export interface FactsTable {
  image_id: string;
  customer_id: string;
  source: string;
  format: string;
  outcome: string;
  error_code: string | null;
  bytes: BigInt;
  width: number | null;
  height: number | null;
  megapixels: number | null;
  received_at: Timestamp;
  processed_at: Timestamp;
  day: ColumnType<string, string, string>;
  queue_ms: number;
  processing_ms: number;
  processors: Json<Record<string, string>>;
  dimensions: Json<Record<string, unknown>>;
  labels: Generated<string[]>;
}

interface RollupColumns {
  customer_id: string;
  format: string;
  source: string;
  outcome: string;
  error_code: string;
  images: BigInt;
  bytes: BigInt;
  megapixels: number;
  queue_ms_sum: BigInt;
  processing_ms_sum: BigInt;
  latency_hist: ColumnType<number[], string, string>;
  /** One of the key's rows (catalog/counter-slots.ts); a count is the sum over them. */
  slot: Generated<number>;
}

export interface RollupDailyTable extends RollupColumns {
  day: ColumnType<string, string, string>;
}

export interface RollupHourlyTable extends RollupColumns {
  hour: Timestamp;
}

export interface PurgeRunsTable {
  id: string;
  kind: 'retention' | 'erasure';
  scope: Json<Record<string, unknown>>;
  started_at: Timestamp;
  window_ms: BigInt | null;
  heartbeat_at: Generated<Date>;
  sealed_at: Timestamp | null;
  /** What holds kept back and what their release let go (0028), for the receipt. */
  holds: ColumnType<unknown | null, string | null | undefined, string | null>;
}

/** A Kafka message sent to a dead-letter topic (0029; owner: catalog/dead-letters.ts). */
export interface DeadLettersTable {
  id: Generated<string>;
  /** The original message's topic, partition and offset (unique). */
  topic: string;
  partition: number;
  offset: BigInt;
  /** The customer-id header as sent (it may name no customer). */
  customer_id: string | null;
  message_id: string | null;
  code: string;
  message: string;
  dead_lettered_at: Timestamp;
  /** When `imagelake kafka replay-dlq` produced it again onto its topic. */
  replayed_at: Timestamp | null;
}

/** A legal hold (0028; owner: catalog/holds.ts). Never deleted: released holds keep their record. */
export interface HoldsTable {
  id: Generated<string>;
  /** Every image of this customer (when image_ids is null), also those landing while it is active. */
  customer_id: string | null;
  /** Exactly these images. */
  image_ids: string[] | null;
  reason: string;
  /** When the hold is expected to end; an active hold past it is flagged by the audit, not ended. */
  until: Timestamp | null;
  created_at: Timestamp;
  released_at: Timestamp | null;
  release_reason: string | null;
  /** On a lake with S3 Object Lock: the newest landing whose objects carry an S3 legal hold. */
  objects_locked_through: Timestamp | null;
}

export interface PurgeLedgerTable {
  id: Generated<string>;
  run_id: string;
  kind: string;
  key: string | null;
  subject_hash: string | null;
  bytes: BigInt;
  done: Generated<boolean>;
}

export interface PurgeReceiptsTable {
  seq: Generated<string>;
  run_id: string;
  body: Json<Record<string, unknown>>;
  prev_hash: string;
  hash: string;
}

export interface OutboxTable {
  id: Generated<string>;
  topic: string;
  key: string;
  payload: Json<Record<string, unknown>>;
  created_at: Timestamp;
  /** W3C traceparent of the outcome that wrote the event; the publish span continues it. */
  traceparent: Generated<string | null>;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface UploadsTable {
  id: string;
  customer_id: string;
  staging_key: string;
  filename: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  image_id: string | null;
  /** Bytes staged by the last PUT through the API (0 before, and for presigned PUTs). */
  bytes: BigInt;
}

export interface TusUploadsTable {
  /** The upload's id in its URL (/v1/tus/{id}): 32 hex digits. */
  id: string;
  customer_id: string;
  /** Upload-Length: the bytes the upload will have. */
  size: BigInt;
  filename: string | null;
  content_type: string | null;
  idempotency_key: string | null;
  priority: ColumnType<JobPriority, JobPriority | undefined, JobPriority>;
  created_at: Timestamp;
  expires_at: Timestamp;
  /** The image it landed as; null while unfinished. */
  image_id: string | null;
}

/** A customer's webhook endpoint (owner: catalog/webhooks.ts). */
export interface WebhookEndpointsTable {
  id: string;
  customer_id: string;
  url: string;
  description: string | null;
  events: ColumnType<string[], string[], string[]>;
  secret: string;
  previous_secret: string | null;
  previous_secret_until: Timestamp | null;
  enabled: Generated<boolean>;
  disabled_reason: string | null;
  disabled_at: Timestamp | null;
  failing_since: Timestamp | null;
  last_claim_at: Timestamp | null;
  /** The dispatcher process sending this endpoint's deliveries, and until when (the claim's lease). */
  dispatcher: Generated<string | null>;
  dispatcher_until: Generated<Timestamp | null>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One attempt of a delivery, as its log shows it. */
export interface DeliveryAttempt {
  at: string;
  /** The receiver's HTTP status; null when none came (timeout, connection refused, refused address). */
  statusCode: number | null;
  error: string | null;
  latencyMs: number;
}

/** One event for one endpoint (owner: catalog/webhook-deliveries.ts). */
export interface WebhookDeliveriesTable {
  id: string;
  endpoint_id: string;
  customer_id: string;
  image_id: string | null;
  event_type: string;
  /** The JSON body, as every attempt sends and signs it. */
  payload: string;
  status: ColumnType<DeliveryStatus, DeliveryStatus | undefined, DeliveryStatus>;
  attempts: Generated<number>;
  /** Attempts since the delivery was written or last replayed: its place in the retry schedule. */
  round_attempts: Generated<number>;
  next_attempt_at: Timestamp | null;
  last_status: number | null;
  last_error: string | null;
  attempt_log: ColumnType<DeliveryAttempt[], string | undefined, string>;
  created_at: Timestamp;
  delivered_at: Timestamp | null;
  /** W3C traceparent of the span that wrote the delivery; each attempt's span continues it. Null untraced. */
  traceparent: Generated<string | null>;
}

/**
 * A delivery waiting for its next attempt (owner: catalog/webhook-deliveries.ts): a delivery is
 * pending exactly while it has a row here.
 */
export interface WebhookDueTable {
  delivery_id: string;
  endpoint_id: string;
  next_attempt_at: Timestamp;
  /** The delivery's: the delivery log lists pending ones by it. */
  created_at: Timestamp;
}

/**
 * A delivery that failed for good (owner: catalog/webhook-deliveries.ts): a delivery is failed
 * exactly while it has a row here, which the delivery log and the replay of failed ones read.
 */
export interface WebhookFailedTable {
  delivery_id: string;
  endpoint_id: string;
  created_at: Timestamp;
}

/**
 * Deliveries written per endpoint and UTC day, in slots (owner: catalog/webhook-deliveries.ts): what
 * the operators' panel adds up, less the pending and failed ones, for the delivered.
 */
export interface WebhookWrittenDailyTable {
  day: ColumnType<string, string, string>;
  endpoint_id: string;
  slot: number;
  written: BigInt;
}

export interface Database {
  customers: CustomersTable;
  api_keys: ApiKeysTable;
  images: ImagesTable;
  jobs: JobsTable;
  queue_shares: QueueSharesTable;
  reprocess_runs: ReprocessRunsTable;
  'analytics.facts': FactsTable;
  'analytics.rollup_daily': RollupDailyTable;
  'analytics.rollup_hourly': RollupHourlyTable;
  purge_runs: PurgeRunsTable;
  purge_ledger: PurgeLedgerTable;
  purge_receipts: PurgeReceiptsTable;
  holds: HoldsTable;
  dead_letters: DeadLettersTable;
  outbox: OutboxTable;
  settings: SettingsTable;
  uploads: UploadsTable;
  tus_uploads: TusUploadsTable;
  rate_buckets: RateBucketsTable;
  quota_usage: QuotaUsageTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_due: WebhookDueTable;
  webhook_failed: WebhookFailedTable;
  webhook_written_daily: WebhookWrittenDailyTable;
  image_hashes: ImageHashesTable;
}

export type ImageRow = Selectable<ImagesTable>;
export type NewImage = Insertable<ImagesTable>;
export type CustomerRow = Selectable<CustomersTable>;
