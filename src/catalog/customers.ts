import { randomUUID } from 'node:crypto';
import { AppError } from '../errors.ts';
import { type IssuedKey, issueKey } from './api-keys.ts';
import type { Db } from './database.ts';
import type { CustomerRow } from './schema.ts';

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

/** Whether the catalog has any customer (offline commands refuse one without: likely the wrong catalog). */
export async function hasCustomers(db: Db): Promise<boolean> {
  const customers = await db
    .selectFrom('customers')
    .select(db.fn.countAll<string>().as('n'))
    .executeTakeFirst();
  return Number(customers?.n ?? 0) > 0;
}
