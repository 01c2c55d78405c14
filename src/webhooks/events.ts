import type { Db } from '../catalog/database.ts';
import { getImage } from '../catalog/images.ts';
import type { ImageRow } from '../catalog/schema.ts';
import { addDeliveries, type NewDelivery } from '../catalog/webhook-deliveries.ts';
import { subscribedEndpoints } from '../catalog/webhooks.ts';
import { contextOf, inContext, traceparentOf } from '../observability/tracing.ts';
import { toImageBody } from '../processing/image-view.ts';
import { customerWindow } from '../retention/windows.ts';

/** The events a customer may subscribe an endpoint to. */
export const WEBHOOK_EVENTS = [
  'image.received',
  'image.processed',
  'image.failed',
  'image.erased',
  'image.expired',
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** The body every delivery sends: `{"type", "timestamp", "data"}`. */
export function eventBody(type: string, at: Date, data: Record<string, unknown>): string {
  return JSON.stringify({ type, timestamp: at.toISOString(), data });
}

/**
 * Writes the deliveries of an image event in the caller's transaction (landing's, outcome's), one
 * per enabled endpoint of the image's customer subscribed to it, so the event commits with what it
 * tells or not at all. `data` is the image as GET /v1/images/{id} shows it at that moment.
 * `endpoints`, when given, are that customer's subscribed endpoints read earlier in the same
 * transaction (announceImages reads them once for a group's images).
 */
export async function announceImage(
  trx: Db,
  type: 'image.received' | 'image.processed' | 'image.failed',
  image: { id: string; customerId: string },
  at: Date,
  platformRetentionMs: number,
  endpoints?: Array<{ id: string }>,
): Promise<void> {
  // The endpoints first: most customers have none, and then the image need not be read at all.
  endpoints ??= await subscribedEndpoints(trx, image.customerId, type);
  if (endpoints.length === 0) return;
  const row = await getImage(trx, image.id);
  if (!row) return;
  const data = toImageBody(row, await customerWindow(trx, row.customer_id, platformRetentionMs));
  await deliverTo(trx, endpoints, row, type, eventBody(type, at, data), at);
}

/**
 * announceImage for the images of a group commit (ingest/land-group.ts), each written in its own
 * landing's context so its deliveries keep that landing's traceparent. The endpoints are looked up
 * once per customer rather than once per image: most customers have none, and a statement per image
 * was most of a group's round trips.
 */
export async function announceImages(
  trx: Db,
  type: 'image.received' | 'image.processed' | 'image.failed',
  images: Array<{ id: string; customerId: string; at: Date; traceparent: string | null }>,
  platformRetentionMs: number,
): Promise<void> {
  const subscribed = subscribedOnce(trx, type);
  for (const image of images) {
    const endpoints = await subscribed(image.customerId);
    if (endpoints.length > 0)
      await inContext(contextOf(image.traceparent), () =>
        announceImage(trx, type, image, image.at, platformRetentionMs, endpoints),
      );
  }
}

/**
 * Writes image.erased or image.expired deliveries in the erasure's or purge's transaction, after the
 * image's earlier deliveries were deleted with it. They carry no metadata (the image is gone): its
 * id, its customer, when it was received and when it went.
 */
export async function announceEnd(
  trx: Db,
  type: 'image.erased' | 'image.expired',
  images: Array<Pick<ImageRow, 'id' | 'customer_id' | 'received_at'>>,
  at: Date,
): Promise<void> {
  const subscribed = subscribedOnce(trx, type);
  // Every image's deliveries in one go: a purge announces a thousand images per transaction.
  const deliveries: NewDelivery[] = [];
  const traceparent = traceparentOf();
  for (const image of images) {
    const endpoints = await subscribed(image.customer_id);
    if (endpoints.length === 0) continue;
    const payload = eventBody(type, at, {
      id: image.id,
      customerId: image.customer_id,
      receivedAt: image.received_at.toISOString(),
      [type === 'image.erased' ? 'erasedAt' : 'expiredAt']: at.toISOString(),
    });
    deliveries.push(...deliveriesTo(endpoints, image, type, payload, traceparent));
  }
  await addDeliveries(trx, deliveries, at);
}

/** A customer's endpoints subscribed to `type`, read once per customer for a batch of images. */
function subscribedOnce(trx: Db, type: WebhookEvent): (customerId: string) => Promise<Array<{ id: string }>> {
  const read = new Map<string, Promise<Array<{ id: string }>>>();
  return (customerId) => {
    let endpoints = read.get(customerId);
    if (!endpoints) {
      endpoints = subscribedEndpoints(trx, customerId, type);
      read.set(customerId, endpoints);
    }
    return endpoints;
  };
}

/**
 * One delivery of an image's event per endpoint, due now. Each keeps the context of the span it is
 * written in (the landing, the outcome): its attempts' spans join the image's trace.
 */
async function deliverTo(
  trx: Db,
  endpoints: Array<{ id: string }>,
  image: Pick<ImageRow, 'id' | 'customer_id'>,
  type: WebhookEvent,
  payload: string,
  at: Date,
): Promise<void> {
  await addDeliveries(trx, deliveriesTo(endpoints, image, type, payload, traceparentOf()), at);
}

function deliveriesTo(
  endpoints: Array<{ id: string }>,
  image: Pick<ImageRow, 'id' | 'customer_id'>,
  type: WebhookEvent,
  payload: string,
  traceparent: string | null,
): NewDelivery[] {
  return endpoints.map((e) => ({
    endpointId: e.id,
    customerId: image.customer_id,
    imageId: image.id,
    eventType: type,
    payload,
    traceparent,
  }));
}
