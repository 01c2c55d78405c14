import { randomUUID } from 'node:crypto';
import { AppError } from '../errors.ts';
import { type IssuedKey, issueKey } from './api-keys.ts';
import type { Db } from './database.ts';
import type { CustomerRow, DuplicatePolicy } from './schema.ts';

/** A new customer and its first key. A name another customer has (ignoring case) is CUSTOMER_EXISTS. */
export async function createCustomer(
  db: Db,
  name: string,
): Promise<{ customer: CustomerRow; key: IssuedKey }> {
  // The unique index decides, so two processes creating the same name at once cannot both succeed.
  return db.transaction().execute(async (trx) => {
    const customer = await trx
      .insertInto('customers')
      .values({ id: randomUUID(), name })
      .returningAll()
      .executeTakeFirstOrThrow()
      .catch((error: unknown) => {
        const pg = error as { code?: string; constraint?: string };
        if (pg.code === '23505' && pg.constraint === 'customers_name_unique')
          throw new AppError('CUSTOMER_EXISTS', `"${name}" is taken.`);
        throw error;
      });
    const key = await issueKey(trx, 'customer', {
      customerId: customer.id,
      name: 'created with the customer',
    });
    return { customer, key };
  });
}

export async function getCustomer(db: Db, id: string): Promise<CustomerRow | undefined> {
  return db.selectFrom('customers').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function listCustomers(db: Db): Promise<CustomerRow[]> {
  return db.selectFrom('customers').selectAll().orderBy('created_at').execute();
}

/** A customer's own limits; a key left out is unchanged, null returns it to the platform's default. */
export interface CustomerLimitSettings {
  uploadsPerSecond?: number | null;
  bytesPerSecond?: number | null;
  monthlyImages?: number | null;
  monthlyBytes?: number | null;
  queueShare?: number | null;
}

/** Sets a customer's own limits; the customer after the change, or undefined when there is none. */
export async function setLimits(
  db: Db,
  id: string,
  limits: CustomerLimitSettings,
): Promise<CustomerRow | undefined> {
  const set: Record<string, number | null> = {};
  if (limits.uploadsPerSecond !== undefined) set.uploads_per_second = limits.uploadsPerSecond;
  if (limits.bytesPerSecond !== undefined) set.bytes_per_second = limits.bytesPerSecond;
  if (limits.monthlyImages !== undefined) set.monthly_images = limits.monthlyImages;
  if (limits.monthlyBytes !== undefined) set.monthly_bytes = limits.monthlyBytes;
  if (limits.queueShare !== undefined) set.queue_share = limits.queueShare;
  if (Object.keys(set).length === 0) return getCustomer(db, id);
  return db.updateTable('customers').set(set).where('id', '=', id).returningAll().executeTakeFirst();
}

/** Whether the catalog has any customer (offline commands refuse one without: likely the wrong catalog). */
export async function hasCustomers(db: Db): Promise<boolean> {
  const customers = await db
    .selectFrom('customers')
    .select(db.fn.countAll<string>().as('n'))
    .executeTakeFirst();
  return Number(customers?.n ?? 0) > 0;
}

// ---- Retention windows and lookups (read by retention, the API and Kafka ingest) ----

/** Sets a customer's own retention window; null falls back to the platform's. */
export async function setRetention(db: Db, id: string, retentionMs: number | null): Promise<void> {
  await db.updateTable('customers').set({ retention_ms: retentionMs }).where('id', '=', id).execute();
}

/** Sets a customer's weight in the workers' fair share (catalog/queue.ts stamps its next jobs with it). */
export async function setWeight(db: Db, id: string, weight: number): Promise<void> {
  await db.updateTable('customers').set({ weight }).where('id', '=', id).execute();
}

/** Sets what an exact re-upload of this customer meets: accept (recorded only), flag, or reject (409). */
export async function setDuplicatePolicy(db: Db, id: string, policy: DuplicatePolicy): Promise<void> {
  await db.updateTable('customers').set({ duplicates: policy }).where('id', '=', id).execute();
}

/** A customer's duplicates policy, read in the landing's transaction (so every api process sees a change at once). */
export async function duplicatePolicyOf(db: Db, id: string): Promise<DuplicatePolicy> {
  const row = await db.selectFrom('customers').select('duplicates').where('id', '=', id).executeTakeFirst();
  return row?.duplicates ?? 'accept';
}

/** Whether a customer with this id exists (Kafka messages name theirs). */
export async function customerExists(db: Db, id: string): Promise<boolean> {
  const row = await db.selectFrom('customers').select('id').where('id', '=', id).executeTakeFirst();
  return Boolean(row);
}

/** A customer's own retention window (null: the platform's); undefined when there is no such customer. */
export async function retentionOf(db: Db, id: string): Promise<string | null | undefined> {
  const row = await db.selectFrom('customers').select('retention_ms').where('id', '=', id).executeTakeFirst();
  return row?.retention_ms;
}

/** The own retention windows of the given customers, by id (null: the platform's). */
export async function retentionsOf(db: Db, ids: string[]): Promise<Map<string, string | null>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('customers')
    .select(['id', 'retention_ms'])
    .where('id', 'in', ids)
    .execute();
  return new Map(rows.map((r) => [r.id, r.retention_ms]));
}

/** Every customer's own retention window (null: the platform's). */
export async function allRetentions(db: Db): Promise<Array<{ id: string; retention_ms: string | null }>> {
  return db.selectFrom('customers').select(['id', 'retention_ms']).execute();
}

/** The shortest own window any customer has (null when none has one). */
export async function shortestRetention(db: Db): Promise<string | null> {
  const row = await db
    .selectFrom('customers')
    .select((eb) => eb.fn.min('retention_ms').as('min'))
    .executeTakeFirst();
  return (row?.min as string | null | undefined) ?? null;
}
