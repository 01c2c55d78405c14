import { randomUUID } from 'node:crypto';
import type { Db } from './database.ts';
import { type IssuedKey, issueKey } from './keys.ts';
import type { CustomerRow } from './schema.ts';

export async function createCustomer(
  db: Db,
  name: string,
): Promise<{ customer: CustomerRow; key: IssuedKey }> {
  return db.transaction().execute(async (trx) => {
    const customer = await trx
      .insertInto('customers')
      .values({ id: randomUUID(), name })
      .returningAll()
      .executeTakeFirstOrThrow();
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
