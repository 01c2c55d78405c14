/**
 * The one catalogue of errors. Each cause has a stable code that clients may switch on,
 * an HTTP status, and a public message that says what to do. Internals never leave a 5xx.
 */
export const ERRORS = {
  UNAUTHORIZED: { status: 401, message: 'Send a valid key as "Authorization: Bearer <key>".' },
  FORBIDDEN: { status: 403, message: 'This key may not do that.' },
  NOT_FOUND: { status: 404, message: 'No such resource.' },
  VALIDATION_FAILED: { status: 400, message: 'The request does not match the documented schema.' },
  EMPTY_BODY: { status: 400, message: 'The request carried no image bytes.' },
  MALFORMED_REQUEST: {
    status: 400,
    message: 'The request is not valid HTTP/1.1 (request line, headers or framing); fix the client.',
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    message: 'This route does not take that method; the Allow header lists the ones it takes.',
  },
  REQUEST_TIMEOUT: { status: 408, message: 'The request was not received in time; send it again.' },
  BODY_TOO_LARGE: {
    status: 413,
    message: 'The request body is larger than the limit for this route (1 MiB for JSON); send less.',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    message: 'The request headers are larger than the limit (16 KiB); send fewer or shorter headers.',
  },
  CUSTOMER_EXISTS: {
    status: 409,
    message: 'A customer of that name exists already (names are compared ignoring case); choose another.',
  },
  UNSUPPORTED_FORMAT: {
    status: 415,
    message: 'Not a supported image. Send JPEG, PNG, WebP, GIF, AVIF, TIFF or HEIC/HEIF bytes.',
  },
  IMAGE_TOO_LARGE: { status: 413, message: 'The image is larger than the byte limit.' },
  TOO_MANY_PIXELS: {
    status: 422,
    message: 'The image has more pixels than the limit (decompression bomb guard).',
  },
  TOO_MANY_FRAMES: { status: 422, message: 'The image has more frames than the limit.' },
  CORRUPT_IMAGE: { status: 422, message: 'The image could not be decoded; it is corrupt or truncated.' },
  UNSUPPORTED_VARIANT: {
    status: 422,
    message:
      'The image is a valid container of a supported format, but this variant of it cannot be decoded here (the message names the variant); convert it, e.g. to 8-bit RGB.',
  },
  MISSING_CUSTOMER: { status: 400, message: 'The message has no customer-id header.' },
  UNKNOWN_CUSTOMER: { status: 400, message: 'The customer-id names no customer.' },
  CLAIM_CHECK_INVALID: {
    status: 400,
    message: 'The claim check is not {"ref": "<lake key>", "customerId": "..."}.',
  },
  CLAIM_CHECK_FORBIDDEN: {
    status: 403,
    message: 'The claim check points outside the allowed locations; nothing was fetched.',
  },
  CLAIM_CHECK_NOT_FOUND: { status: 404, message: 'The claim check points at an object that does not exist.' },
  UPLOAD_NOT_FOUND: {
    status: 404,
    message: 'No such upload session, or it has expired; start a new one with POST /v1/uploads.',
  },
  TUS_UPLOAD_NOT_FOUND: {
    status: 404,
    message: 'No such resumable upload for this key: it was terminated, refused, or never existed.',
  },
  TUS_UPLOAD_EXPIRED: {
    status: 410,
    message: 'This resumable upload expired before it was finished (IMAGELAKE_TUS_EXPIRY); start a new one.',
  },
  TUS_UPLOAD_BUSY: {
    status: 423,
    message: 'Another request is still writing this resumable upload; retry in a moment.',
  },
  TUS_UPLOAD_LANDED: {
    status: 409,
    message: 'This resumable upload has landed as an image already; delete the image instead.',
  },
  UPLOAD_EMPTY: {
    status: 409,
    message: 'Nothing was uploaded yet: PUT the bytes to the upload URL first, then complete.',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    message:
      'This Idempotency-Key was used before for different bytes; send a new key for a new image, or the same bytes to get the first answer again.',
  },
  UPLOAD_LIMIT: {
    status: 429,
    message:
      'Too many open upload sessions or staged bytes for this customer; complete them, or cancel them with DELETE /v1/uploads/{id}.',
  },
  TOO_MANY_UPLOADS: {
    status: 429,
    message: "This customer's uploads in progress are at the limit; retry after the Retry-After seconds.",
  },
  BODY_TIMEOUT: {
    status: 408,
    message: 'The request body stopped arriving; send it again (with the same Idempotency-Key).',
  },
  BODY_INCOMPLETE: {
    status: 400,
    message:
      'The connection ended before the whole body arrived; send it again (with the same Idempotency-Key).',
  },
  DUPLICATE_IMAGE: {
    status: 409,
    message:
      'This customer refuses exact duplicates (its duplicates policy is "reject"), and an image with the same bytes is already stored; nothing was stored.',
  },
  LAST_ADMIN_KEY: {
    status: 409,
    message:
      'This is the last active admin key and revoking it would lock every admin out. To rotate it, restart with a new IMAGELAKE_ADMIN_TOKEN, then revoke this one.',
  },
  QUEUE_FULL: {
    status: 429,
    message: 'The processing queue is full; retry later with the same Idempotency-Key.',
  },
  RATE_LIMITED: {
    status: 429,
    message:
      "This customer's upload rate limit (uploads or bytes a second) is reached; retry after the Retry-After seconds. The RateLimit and RateLimit-Policy headers show the limit and what is left.",
  },
  // 403, not 429: waiting a few seconds does not help; the quota frees at the next UTC month or when raised.
  QUOTA_EXCEEDED: {
    status: 403,
    message:
      "This customer's monthly quota (images or bytes, per UTC month) is used up; nothing more lands until the next month, unless an admin raises it (PATCH /v1/customers/{id} with limits).",
  },
  CHECKSUM_MISMATCH: {
    status: 500,
    message: 'The stored original no longer matches the checksum taken at landing.',
  },
  PROCESSOR_INVALID: { status: 500, message: 'A configured processor is not a valid processor module.' },
  PROCESSING_TIMEOUT: { status: 500, message: 'Processing took longer than the time limit.' },
  PROCESSOR_FAILED: { status: 500, message: 'A processor failed on this image.' },
  PROCESSOR_TIMEOUT: { status: 500, message: 'A processor ran past its time limit on this image.' },
  PROCESSOR_CRASHED: {
    status: 500,
    message: 'A processor crashed or exited on this image; it was restarted.',
  },
  PROCESSOR_MEMORY: {
    status: 500,
    message: 'A processor went over its memory limit on this image; it was restarted.',
  },
  PROCESSOR_OUTPUT_INVALID: {
    status: 500,
    message: 'A processor answered with output that does not match its declared fields or the protocol.',
  },
  PROCESSOR_UNAVAILABLE: { status: 500, message: 'A processor could not be reached (after its retries).' },
  PROCESSOR_SKIPPED: { status: 500, message: 'A required processor did not run: one it runs after failed.' },
  PROCESSOR_UNKNOWN: { status: 400, message: 'No processor of that name is configured.' },
  LAKE_UNAVAILABLE: { status: 503, message: 'The lake is not reachable; retry later.' },
  CATALOG_UNAVAILABLE: {
    status: 503,
    message:
      'The catalog (PostgreSQL) is not reachable; retry after Retry-After seconds, with the same Idempotency-Key.',
  },
  SHUTTING_DOWN: {
    status: 503,
    message:
      'This API process is shutting down and takes no new requests; retry after Retry-After seconds (another process will answer).',
  },
  PURGE_RUNNING: {
    status: 409,
    message: 'A purge is running already; its receipt will be listed at /v1/purges.',
  },
  NOT_FAILED: {
    status: 409,
    message:
      'Only a failed image can be retried; this one is not failed (it is processed, or already queued again).',
  },
  LEGAL_HOLD: {
    status: 409,
    message:
      'Images in scope are under a legal hold and were not erased (nothing was). Release the hold (DELETE /v1/holds/{id}), or erase anyway as an admin with force=true; the receipt then records the holds overridden.',
  },
  HOLD_RELEASED: {
    status: 409,
    message: 'This hold was released already; GET /v1/holds/{id} shows when and why.',
  },
  SQL_WRITE_REFUSED: {
    status: 400,
    message: 'Only read queries run here (SELECT, WITH, VALUES, TABLE); writes and DDL are refused.',
  },
  SQL_FORBIDDEN: {
    status: 403,
    message:
      'Only the analytics schema can be read (analytics.facts, analytics.rollup_hourly, analytics.rollup_daily, analytics.rollup_daily_totals, analytics.rollup_daily_customers, analytics.rollup_monthly_customers, analytics.rollup_processors_daily, analytics.usage_daily, analytics.customers), and functions with effects beyond the query (advisory locks, set_config, pg_notify, large objects, ending sessions) are refused.',
  },
  SQL_TIMEOUT: {
    status: 408,
    message:
      'The query ran past the statement timeout; narrow it (a date range, the rollups instead of facts).',
  },
  SQL_INVALID: { status: 400, message: 'The query is not valid SQL for this database.' },
  SQL_RESULT_TOO_LARGE: {
    status: 400,
    message:
      'The result is too large to send; aggregate, select fewer columns or add a LIMIT (or read the Parquet export).',
  },
  SQL_RESOURCE_LIMIT: {
    status: 400,
    message:
      'The query needs more memory or temporary disk than analyst SQL may use; narrow it (a date range, the rollups instead of facts).',
  },
  SQL_BUSY: {
    status: 429,
    message:
      "Too many SQL queries are running (this key's share, or every analyst connection); retry when one has finished.",
  },
  SQL_UNAVAILABLE: {
    status: 503,
    message: 'Analyst SQL is not available: the analyst database role could not be set up.',
  },
  SCHEDULER_BUSY: {
    status: 409,
    message: 'The scheduler is running a purge or an export; try again in a moment.',
  },
  WEBHOOK_URL_INVALID: {
    status: 400,
    message:
      'The webhook URL must be an absolute https:// URL (http:// only where IMAGELAKE_WEBHOOK_ALLOW_HTTP=true), without a user name or password, whose host resolves.',
  },
  WEBHOOK_URL_FORBIDDEN: {
    status: 400,
    message:
      'The webhook URL leads to a loopback, private, link-local or metadata address; webhooks go to public addresses only.',
  },
  WEBHOOK_LIMIT: {
    status: 409,
    message:
      'This customer has as many webhook endpoints as it may (IMAGELAKE_WEBHOOK_MAX_ENDPOINTS); delete one, or subscribe an existing one to more events.',
  },
  WEBHOOK_DISABLED: {
    status: 409,
    message: 'The webhook endpoint is disabled; re-enable it with PATCH {"enabled": true} first.',
  },
  NOT_READY: { status: 503, message: 'The service is starting or a dependency is down.' },
  INTERNAL: { status: 500, message: 'Internal error. It has been logged.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra facts safe to show the client, e.g. the limit that was crossed. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${ERRORS[code].message} ${detail}` : ERRORS[code].message, options);
    this.name = 'AppError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.detail = detail;
  }
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}

/**
 * The retry policy, in one place. A permanent code is caused by the input itself, so trying the same
 * input again fails the same way: processing fails such a job at once (no backoff, no further
 * attempts), and Kafka ingest sends such a message to its dead-letter topic instead of retrying it.
 * Every other code (the lake, the catalog, a processor that is down, a full queue) is retried.
 */
export const PERMANENT_CODES: ReadonlySet<ErrorCode> = new Set([
  // The bytes themselves are the problem.
  'UNSUPPORTED_FORMAT',
  'IMAGE_TOO_LARGE',
  'TOO_MANY_PIXELS',
  'TOO_MANY_FRAMES',
  'CORRUPT_IMAGE',
  'UNSUPPORTED_VARIANT',
  'CHECKSUM_MISMATCH',
  // A processor that answers with output not matching its declaration will answer the same again.
  'PROCESSOR_OUTPUT_INVALID',
  // The message that carried the image is the problem.
  'MISSING_CUSTOMER',
  'UNKNOWN_CUSTOMER',
  'EMPTY_BODY',
  'CLAIM_CHECK_INVALID',
  'CLAIM_CHECK_FORBIDDEN',
  'CLAIM_CHECK_NOT_FOUND',
  // The message-id landed before with other bytes: this message's image would otherwise be dropped.
  'IDEMPOTENCY_KEY_REUSED',
  // The customer's month is used up: retrying the message within the month fails the same way.
  'QUOTA_EXCEEDED',
  // The same bytes are stored already and the customer refuses exact duplicates: they stay refused.
  'DUPLICATE_IMAGE',
]);
