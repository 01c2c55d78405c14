import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com), through its own npm package, so
 * every official library verifies what we send: `webhook-signature: v1,<base64 HMAC-SHA256 of
 * "id.timestamp.body">`, one signature per secret in force, space separated.
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

/** The three headers of one attempt. `at` is the attempt's time: the timestamp is signed too. */
export function signedHeaders(
  secrets: string[],
  messageId: string,
  at: Date,
  body: string,
): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  return {
    'webhook-id': messageId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': secrets.map((s) => new Webhook(s).sign(messageId, at, body)).join(' '),
  };
}
