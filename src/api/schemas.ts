import { type Static, type StringOptions, type TSchema, Type } from '@sinclair/typebox';
import type { Receipt } from '../retention/receipts.ts';

export const ErrorBody = Type.Object(
  { error: Type.Object({ code: Type.String(), message: Type.String() }) },
  { $id: 'Error', description: 'Every error: a stable code to switch on and a message for people.' },
);

export const Uuid = Type.String({ format: 'uuid' });

/**
 * Text stored in the catalog or sent to it: no control characters (PostgreSQL refuses NUL in text,
 * and the others only hide what a name says).
 */
const CONTROL = '\\u0000-\\u001f\\u007f-\\u009f';
/** What String.prototype.trim() removes, besides the controls: a name must have something else. */
const SPACE = '\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff';
export const TEXT_PATTERN = `^[^${CONTROL}]*$`;
/** A name: text with at least one visible character, so "   " is no name. */
export const NAME_PATTERN = `^[^${CONTROL}]*[^${CONTROL}${SPACE}][^${CONTROL}]*$`;

/** What each pattern asks for, in words: a validation error says this rather than the regex. */
export const PATTERN_MESSAGES = new Map<string, string>([
  [TEXT_PATTERN, 'must not contain control characters (such as NUL)'],
  [NAME_PATTERN, 'must have a visible character and no control characters (such as NUL)'],
]);

/** A string matching a pattern, whose validation error says `message` ("must be ..."). */
export const Matching = (pattern: string, message: string, options: StringOptions = {}) => {
  PATTERN_MESSAGES.set(pattern, message);
  return Type.String({ pattern, ...options });
};

export const Text = (options: StringOptions = {}) => Type.String({ pattern: TEXT_PATTERN, ...options });
export const Name = (options: StringOptions = {}) =>
  Type.String({ minLength: 1, maxLength: 200, pattern: NAME_PATTERN, ...options });

/** A calendar day, YYYY-MM-DD, that exists: 2026-02-30 and 2026-13-01 are refused. */
export const Day = (options: StringOptions = {}) => Type.String({ format: 'date', ...options });

/**
 * One of a few strings, as a JSON Schema enum: a wrong value is one error that lists the allowed
 * values, where a union of literals gives one "must be equal to constant" per literal.
 */
export const OneOf = <const T extends string>(values: readonly T[], options: StringOptions = {}) =>
  Type.Unsafe<T>({ type: 'string', enum: [...values], ...options });

export const RenditionBody = Type.Object({
  name: Type.String(),
  format: Type.String(),
  width: Type.Integer(),
  height: Type.Integer(),
  bytes: Type.Integer(),
  url: Type.String(),
});

export const ImageBody = Type.Object({
  id: Uuid,
  customerId: Uuid,
  source: Type.Union([Type.Literal('http'), Type.Literal('kafka')]),
  status: Type.Union([
    Type.Literal('received'),
    Type.Literal('processing'),
    Type.Literal('processed'),
    Type.Literal('failed'),
  ]),
  format: Type.String(),
  width: Type.Union([Type.Integer(), Type.Null()]),
  height: Type.Union([Type.Integer(), Type.Null()]),
  bytes: Type.Integer(),
  checksum: Type.String({ description: 'SHA-256 of the bytes as received, hex' }),
  phash: Type.Union([Type.String({ description: '64-bit perceptual hash, hex' }), Type.Null()]),
  filename: Type.Union([Type.String(), Type.Null()]),
  receivedAt: Type.String({ format: 'date-time' }),
  processedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  expiresAt: Type.String({
    format: 'date-time',
    description: 'When the retention purge deletes it everywhere',
  }),
  metadata: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  processors: Type.Record(Type.String(), Type.String(), {
    description: 'name -> version of every processor that ran',
  }),
  labels: Type.Array(Type.String(), {
    description: 'Every label the processors gave the image; by processor under metadata.labels',
  }),
  renditions: Type.Array(RenditionBody),
  duplicateOf: Type.Union([Uuid, Type.Null()], {
    description:
      'The first image of this customer with the same bytes (an exact duplicate), if any is in retention',
  }),
  nearDuplicates: Type.Integer({
    description:
      "How many of this customer's images with other bytes are near-duplicates (perceptual hash within IMAGELAKE_NEAR_DISTANCE bits)",
  }),
  duplicateFlagged: Type.Boolean({
    description: 'The customer\'s duplicates policy "flag" marked it as an exact or near duplicate',
  }),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  traceId: Type.Optional(
    Type.String({
      pattern: '^[0-9a-f]{32}$',
      description:
        'Admins only, when the platform traces (README: Tracing): the OpenTelemetry trace id of the image, from its landing to its outcome',
    }),
  ),
});
export type ImageBodyT = Static<typeof ImageBody>;

export const LandedBody = Type.Object({
  id: Uuid,
  status: Type.String(),
  checksum: Type.String(),
  bytes: Type.Integer(),
});

/**
 * Error answers, always JSON: declared with their media type, so routes that answer images
 * (originals, renditions) do not document their errors as images.
 */
export const errorResponses = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [
      s,
      { description: 'An error', content: { 'application/json': { schema: Type.Ref('Error') } } },
    ]),
  ) as unknown as Record<number, ReturnType<typeof Type.Ref>>;

/** A 200 answered as JSON (this schema) or as CSV, whichever `wantsCsv` says the request asked for. */
export const jsonOrCsv = <T extends TSchema>(schema: T) => ({
  description: 'The rows as JSON, or as CSV with format=csv or Accept: text/csv',
  content: { 'application/json': { schema }, 'text/csv': { schema: Type.String() } },
});

/** Whether a request asks for CSV: `format=csv`, or `Accept: text/csv`. */
export const wantsCsv = (format: unknown, accept: unknown): boolean =>
  format === 'csv' || accept === 'text/csv';

const HoldCounts = Type.Record(Type.String(), Type.Object({ images: Type.Integer(), bytes: Type.Integer() }));

export const ReceiptBody = Type.Object(
  {
    seq: Type.Integer({ description: 'Position in the append-only chain' }),
    hash: Type.String({ description: 'SHA-256 of prevHash and the canonical JSON of the receipt' }),
    prevHash: Type.String(),
    runId: Type.String(),
    kind: OneOf(['retention', 'erasure', 'hold', 'release'], {
      description: 'retention and erasure delete; hold and release record a legal hold placed or released',
    }),
    scope: Type.Record(Type.String(), Type.Unknown()),
    startedAt: Type.String({ format: 'date-time' }),
    finishedAt: Type.String({ format: 'date-time' }),
    windowMs: Type.Union([Type.Integer(), Type.Null()]),
    deleted: Type.Record(Type.String(), Type.Object({ count: Type.Integer(), bytes: Type.Integer() }), {
      description:
        'Per kind of copy: raw, rendition, metadata, orphan, catalog, fact, webhook-delivery, aggregate',
    }),
    subjects: Type.Array(Type.String(), { description: 'SHA-256 of every image id deleted (or held)' }),
    holds: Type.Optional(
      Type.Object(
        {
          kept: Type.Optional(HoldCounts),
          released: Type.Optional(HoldCounts),
          overridden: Type.Optional(HoldCounts),
        },
        {
          description:
            'When legal holds were involved, by hold id: images kept past their window (kept), taken only because their hold was released (released), or erased despite a hold with force (overridden)',
        },
      ),
    ),
  },
  { $id: 'Receipt' },
);

export function toReceiptBody(receipt: Receipt): Static<typeof ReceiptBody> {
  return { seq: receipt.seq, hash: receipt.hash, prevHash: receipt.prevHash, ...receipt.body };
}

/** `force=true` on an erasure: erase images under a legal hold too (admin only; the receipt names the holds). */
export const Force = Type.Object({
  force: Type.Optional(
    Type.Boolean({
      default: false,
      description:
        'Erase images under a legal hold too (admin keys only); the receipt records the holds overridden',
    }),
  ),
});

/** The optional day range of the statistics routes; analytics/range.ts fills in what is left out. */
export const DayRange = {
  from: Type.Optional(
    Day({ description: 'First day, inclusive (default: 29 days before "to": the last 30 days)' }),
  ),
  to: Type.Optional(Day({ description: 'Last day, inclusive (default: today)' })),
};
