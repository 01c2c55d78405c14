import { type Selectable, sql } from 'kysely';
import type { Db } from './database.ts';
import type { WebhookEndpointsTable } from './schema.ts';

/**
 * The `webhook_endpoints` table: every statement on it but one, the dispatcher's claim
 * (catalog/webhook-deliveries.ts `claimDue`), which leases endpoints to a dispatcher in the statement
 * that reads their due deliveries. What an endpoint is and how deliveries to it are made is told in
 * webhooks/ (the service) and catalog/webhook-deliveries.ts (the log).
 */
export type EndpointRow = Selectable<WebhookEndpointsTable>;

export async function insertEndpoint(
  db: Db,
  endpoint: {
    id: string;
    customerId: string;
    url: string;
    description: string | null;
    events: string[];
    secret: string;
  },
): Promise<EndpointRow> {
  return db
    .insertInto('webhook_endpoints')
    .values({
      id: endpoint.id,
      customer_id: endpoint.customerId,
      url: endpoint.url,
      description: endpoint.description,
      events: endpoint.events,
      secret: endpoint.secret,
      previous_secret: null,
      previous_secret_until: null,
      disabled_reason: null,
      disabled_at: null,
      failing_since: null,
      last_claim_at: null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function countEndpoints(db: Db, customerId: string): Promise<number> {
  const row = await db
    .selectFrom('webhook_endpoints')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('customer_id', '=', customerId)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** An endpoint, within a customer's scope when one is given (another customer's is not found). */
export async function getEndpoint(db: Db, id: string, customerId?: string): Promise<EndpointRow | undefined> {
  let query = db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id);
  if (customerId) query = query.where('customer_id', '=', customerId);
  return query.executeTakeFirst();
}

export async function listEndpoints(db: Db, customerId?: string): Promise<EndpointRow[]> {
  let query = db.selectFrom('webhook_endpoints').selectAll().orderBy('created_at').orderBy('id');
  if (customerId) query = query.where('customer_id', '=', customerId);
  return query.limit(1000).execute();
}

/**
 * The customer's enabled endpoints subscribed to an event: read in every landing and outcome
 * transaction, so it is one indexed lookup (most customers have none).
 */
export async function subscribedEndpoints(
  db: Db,
  customerId: string,
  eventType: string,
): Promise<Array<{ id: string }>> {
  // `enabled` is written in, not sent as a value: the prepared statement's plan then still matches
  // the partial index webhook_endpoints_customer (where enabled), and is not made again every time.
  return db
    .selectFrom('webhook_endpoints')
    .select('id')
    .where('customer_id', '=', customerId)
    .where('enabled', '=', sql.lit(true))
    .where(sql<boolean>`${eventType} = any(events)`)
    .execute();
}

/** Changes what the customer may change; re-enabling clears the failure streak. */
export async function updateEndpoint(
  db: Db,
  id: string,
  patch: { url?: string; events?: string[]; description?: string | null; enabled?: boolean },
  now: Date,
): Promise<EndpointRow | undefined> {
  return db
    .updateTable('webhook_endpoints')
    .set({
      ...(patch.url !== undefined ? { url: patch.url } : {}),
      ...(patch.events !== undefined ? { events: patch.events } : {}),
      ...(patch.description !== undefined ? { description: patch.description } : {}),
      ...(patch.enabled === true
        ? { enabled: true, disabled_reason: null, disabled_at: null, failing_since: null }
        : {}),
      ...(patch.enabled === false
        ? { enabled: false, disabled_reason: 'disabled by the customer', disabled_at: now }
        : {}),
      updated_at: now,
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

export async function deleteEndpoint(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('webhook_endpoints').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) === 1;
}

/** A new secret; the one it replaces keeps signing until `previousUntil`. */
export async function rotateSecret(
  db: Db,
  id: string,
  secret: string,
  now: Date,
  previousUntil: Date,
): Promise<EndpointRow | undefined> {
  return db
    .updateTable('webhook_endpoints')
    .set((eb) => ({
      previous_secret: eb.ref('secret'),
      previous_secret_until: previousUntil,
      secret,
      updated_at: now,
    }))
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/** An attempt succeeded: the failure streak ends. */
export async function markHealthy(db: Db, id: string): Promise<void> {
  await db
    .updateTable('webhook_endpoints')
    .set({ failing_since: null })
    .where('id', '=', id)
    .where('failing_since', 'is not', null)
    .execute();
}

/** An attempt failed: starts the failure streak if none runs; returns when it started. */
export async function markFailing(db: Db, id: string, at: Date): Promise<Date | undefined> {
  const row = await db
    .updateTable('webhook_endpoints')
    .set((eb) => ({ failing_since: eb.fn.coalesce('failing_since', sql<Date>`${at}::timestamptz`) }))
    .where('id', '=', id)
    .returning('failing_since')
    .executeTakeFirst();
  return row?.failing_since ?? undefined;
}

/** Disables an endpoint (410 Gone, or failing too long); returns whether this call disabled it. */
export async function disableEndpoint(db: Db, id: string, reason: string, at: Date): Promise<boolean> {
  const result = await db
    .updateTable('webhook_endpoints')
    .set({ enabled: false, disabled_reason: reason, disabled_at: at, updated_at: at })
    .where('id', '=', id)
    .where('enabled', '=', true)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * A stopping dispatcher gives up the endpoints it holds (catalog/webhook-deliveries.ts `claimDue`
 * leases them), after its last attempt is recorded: another dispatcher takes them at once rather
 * than when the lease runs out.
 */
export async function releaseEndpoints(db: Db, dispatcher: string): Promise<void> {
  await db
    .updateTable('webhook_endpoints')
    .set({ dispatcher: null, dispatcher_until: null })
    .where('dispatcher', '=', dispatcher)
    .execute();
}
