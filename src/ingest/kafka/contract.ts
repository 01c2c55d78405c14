import { AppError } from '../../errors.ts';
import type { Lake } from '../../lake/port.ts';

/**
 * The message contract. A message is either the image itself:
 *   value = the image bytes; headers customer-id (required), content-type, message-id, filename
 * or a claim check, for images larger than the broker's message limit:
 *   value = {"ref": "<lake key under an allowed prefix>", "customerId": "..."}
 * The idempotency key is the message-id header, or topic/partition/offset when there is none.
 */
export interface KafkaImageMessage {
  topic: string;
  partition: number;
  offset: bigint;
  value: Buffer;
  headers: Map<string, string>;
}

export interface Resolved {
  customerId: string;
  idempotencyKey: string;
  filename: string | undefined;
  body: Buffer;
  /** The claim-check object to delete once the image has landed (the claim is consumed). */
  claimKey: string | undefined;
}

export function headersOf(raw: Map<Buffer | string, Buffer | string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of raw)
    out.set(String(k).toLowerCase(), Buffer.isBuffer(v) ? v.toString('utf8') : String(v));
  return out;
}

/** No image format starts with '{', so a JSON object here can only be a claim check. */
function looksLikeClaim(value: Buffer): boolean {
  for (const byte of value.subarray(0, 16)) {
    if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
    return byte === 0x7b;
  }
  return false;
}

export async function resolveMessage(
  message: KafkaImageMessage,
  lake: Lake,
  claimPrefixes: string[],
): Promise<Resolved> {
  const idempotencyKey = `kafka:${message.headers.get('message-id') || `${message.topic}/${message.partition}/${message.offset}`}`;
  const filename = message.headers.get('filename') || undefined;
  let customerId = message.headers.get('customer-id')?.trim();

  if (!looksLikeClaim(message.value)) {
    if (!customerId) throw new AppError('MISSING_CUSTOMER');
    return { customerId, idempotencyKey, filename, body: message.value, claimKey: undefined };
  }

  let claim: { ref?: unknown; customerId?: unknown };
  try {
    claim = JSON.parse(message.value.toString('utf8'));
  } catch {
    throw new AppError('CLAIM_CHECK_INVALID', 'The value starts like JSON but does not parse.');
  }
  if (typeof claim.ref !== 'string' || !claim.ref)
    throw new AppError('CLAIM_CHECK_INVALID', '"ref" is missing.');
  if (claim.customerId !== undefined && typeof claim.customerId !== 'string')
    throw new AppError('CLAIM_CHECK_INVALID', '"customerId" must be a string.');
  customerId ||= (claim.customerId as string | undefined)?.trim();
  if (!customerId) throw new AppError('MISSING_CUSTOMER');
  // Only lake keys under the configured prefixes: a claim check is never a way to make us fetch a URL.
  const ref = claim.ref;
  const safe =
    !ref.includes('://') &&
    !ref.startsWith('/') &&
    !ref.split('/').includes('..') &&
    claimPrefixes.some((p) => ref.startsWith(p));
  if (!safe)
    throw new AppError(
      'CLAIM_CHECK_FORBIDDEN',
      `"${ref.slice(0, 200)}" is not under ${claimPrefixes.join(', ')}.`,
    );
  const head = await lake.head(ref);
  if (!head) throw new AppError('CLAIM_CHECK_NOT_FOUND', `No object at "${ref}".`);
  return {
    customerId,
    idempotencyKey,
    filename: filename ?? ref.split('/').pop(),
    body: await lake.getBuffer(ref),
    claimKey: ref,
  };
}
