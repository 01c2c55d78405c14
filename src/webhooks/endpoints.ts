import { randomUUID } from 'node:crypto';
import { customerExists } from '../catalog/customers.ts';
import type { Db } from '../catalog/database.ts';
import { addDeliveries, failPending } from '../catalog/webhook-deliveries.ts';
import {
  countEndpoints,
  type EndpointRow,
  insertEndpoint,
  rotateSecret,
  updateEndpoint,
} from '../catalog/webhooks.ts';
import type { WebhookConfig } from '../config/config.ts';
import { AppError } from '../errors.ts';
import { hostOf, refusedHost } from './address-guard.ts';
import { eventBody } from './events.ts';
import { newSecret } from './signing.ts';

/** How long the secret a rotation replaces keeps signing, so receivers can switch without a gap. */
export const ROTATION_OVERLAP_MS = 24 * 3_600_000;

/**
 * Checks a URL a customer gives: https (or http where allowed), no credentials in it, and a host
 * that resolves only to public addresses (unless private ones are allowed). The same guard runs
 * again at every delivery, on the address actually connected to.
 */
export async function checkUrl(raw: string, config: WebhookConfig): Promise<string> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AppError('WEBHOOK_URL_INVALID', `${JSON.stringify(raw)} is not an absolute URL.`);
  }
  const schemes = config.allowHttp ? ['https:', 'http:'] : ['https:'];
  if (!schemes.includes(url.protocol))
    throw new AppError('WEBHOOK_URL_INVALID', `Its scheme is ${url.protocol.replace(':', '')}.`);
  if (url.username || url.password)
    throw new AppError('WEBHOOK_URL_INVALID', 'It carries a user name or password; put no secrets in URLs.');
  if (!url.hostname) throw new AppError('WEBHOOK_URL_INVALID', 'It has no host.');
  if (!config.allowPrivate) {
    const why = await refusedHost(hostOf(url));
    if (why)
      throw new AppError(
        /resolve/.test(why) && !/resolves to/.test(why) ? 'WEBHOOK_URL_INVALID' : 'WEBHOOK_URL_FORBIDDEN',
        `${why[0]!.toUpperCase()}${why.slice(1)}.`,
      );
  }
  return url.href;
}

export async function registerEndpoint(
  db: Db,
  config: WebhookConfig,
  input: { customerId: string; url: string; events: string[]; description?: string | undefined },
): Promise<EndpointRow> {
  if (!(await customerExists(db, input.customerId))) throw new AppError('UNKNOWN_CUSTOMER');
  const url = await checkUrl(input.url, config);
  if ((await countEndpoints(db, input.customerId)) >= config.maxEndpoints)
    throw new AppError('WEBHOOK_LIMIT', `The limit is ${config.maxEndpoints}.`);
  return insertEndpoint(db, {
    id: randomUUID(),
    customerId: input.customerId,
    url,
    description: input.description ?? null,
    events: [...new Set(input.events)],
    secret: newSecret(),
  });
}

export async function changeEndpoint(
  db: Db,
  config: WebhookConfig,
  endpoint: EndpointRow,
  patch: { url?: string; events?: string[]; description?: string | null; enabled?: boolean },
  now: Date,
): Promise<EndpointRow> {
  const url = patch.url === undefined ? undefined : await checkUrl(patch.url, config);
  const events = patch.events === undefined ? undefined : [...new Set(patch.events)];
  const updated = await updateEndpoint(db, endpoint.id, { ...patch, url, events }, now);
  if (!updated) throw new AppError('NOT_FOUND', 'No such webhook endpoint.');
  // Disabled by the customer: what waits fails now (replayable), as when the dispatcher disables it.
  if (patch.enabled === false) await failPending(db, endpoint.id, 'endpoint disabled by the customer');
  return updated;
}

export async function rotate(
  db: Db,
  endpoint: EndpointRow,
  now: Date,
): Promise<{ row: EndpointRow; previousUntil: Date }> {
  const previousUntil = new Date(now.getTime() + ROTATION_OVERLAP_MS);
  const row = await rotateSecret(db, endpoint.id, newSecret(), now, previousUntil);
  if (!row) throw new AppError('NOT_FOUND', 'No such webhook endpoint.');
  return { row, previousUntil };
}

/** A webhook.test delivery, due now: proof that the endpoint receives and verifies. */
export async function sendTest(db: Db, endpoint: EndpointRow, now: Date): Promise<string> {
  if (!endpoint.enabled) throw new AppError('WEBHOOK_DISABLED');
  const [id] = await addDeliveries(
    db,
    [
      {
        endpointId: endpoint.id,
        customerId: endpoint.customer_id,
        imageId: null,
        eventType: 'webhook.test',
        payload: eventBody('webhook.test', now, { webhookId: endpoint.id, customerId: endpoint.customer_id }),
      },
    ],
    now,
  );
  return id!;
}
