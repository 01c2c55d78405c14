import { createHmac, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): `webhook-signature: v1,<base64
 * HMAC-SHA256 of "id.timestamp.body">` keyed with the secret's bytes (the base64 after `whsec_`),
 * one signature per secret in force, space separated. Node's HMAC rather than the standardwebhooks
 * package's, whose SHA-256 is JavaScript (a third of an attempt's CPU at thousands a second); the
 * tests verify what this signs with that package, so any official library accepts it.
 */

/** A new endpoint secret: `whsec_` and 24 random bytes in base64, the specification's format. */
export function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/** The secrets an endpoint signs with at `now`: its own, and the previous one during a rotation's overlap. */
export function secretsInForce(
  endpoint: { secret: string; previousSecret: string | null; previousSecretUntil: Date | null },
  now: Date,
): string[] {
  const secrets = [endpoint.secret];
  if (endpoint.previousSecret && endpoint.previousSecretUntil && endpoint.previousSecretUntil > now)
    secrets.push(endpoint.previousSecret);
  return secrets;
}

/**
 * Keys by secret. A KeyObject made once makes each HMAC four times cheaper than raw bytes (which
 * Node turns into a key per call). Bounded: past the cap it starts again (a process signs for few
 * endpoints, and secrets rotate rarely).
 */
const keys = new Map<string, KeyObject>();
const MAX_KEYS = 10_000;

/** The key a secret stands for: the bytes of its base64, after the `whsec_` prefix when present. */
function keyOf(secret: string): KeyObject {
  let key = keys.get(secret);
  if (!key) {
    if (keys.size >= MAX_KEYS) keys.clear();
    key = createSecretKey(
      Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64'),
    );
    keys.set(secret, key);
  }
  return key;
}

/** The three headers of one attempt. `at` is the attempt's time: the timestamp is signed too. */
export function signedHeaders(
  secrets: string[],
  messageId: string,
  at: Date,
  body: string,
): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  const timestamp = String(Math.floor(at.getTime() / 1000));
  const signed = `${messageId}.${timestamp}.${body}`;
  return {
    'webhook-id': messageId,
    'webhook-timestamp': timestamp,
    'webhook-signature': secrets
      .map((s) => `v1,${createHmac('sha256', keyOf(s)).update(signed).digest('base64')}`)
      .join(' '),
  };
}
