import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AppError } from '../errors.ts';
import type { Db } from './database.ts';
import type { KeyRole } from './schema.ts';

const PREFIX: Record<KeyRole, string> = { admin: 'il_admin_', customer: 'il_live_', analyst: 'il_analyst_' };

// Keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force.
export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function newKey(role: KeyRole): string {
  return PREFIX[role] + randomBytes(32).toString('base64url');
}

export interface Principal {
  keyId: string;
  role: KeyRole;
  customerId: string | null;
}

export interface IssuedKey {
  id: string;
  key: string;
  prefix: string;
}

export async function issueKey(
  db: Db,
  role: KeyRole,
  options: { customerId?: string; name?: string; key?: string } = {},
): Promise<IssuedKey> {
  const key = options.key ?? newKey(role);
  const id = randomUUID();
  const prefix = key.slice(0, PREFIX[role].length + 6);
  await db
    .insertInto('api_keys')
    .values({
      id,
      role,
      customer_id: options.customerId ?? null,
      name: options.name ?? role,
      hash: hashKey(key),
      prefix,
      revoked_at: null,
    })
    .execute();
  return { id, key, prefix };
}

export async function findPrincipal(db: Db, key: string): Promise<Principal | undefined> {
  const row = await db
    .selectFrom('api_keys')
    .select(['id', 'role', 'customer_id'])
    .where('hash', '=', hashKey(key))
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return row ? { keyId: row.id, role: row.role, customerId: row.customer_id } : undefined;
}

/**
 * Revokes a key at once. The last active admin key is never revoked (LAST_ADMIN_KEY): nobody could
 * manage the platform after it. The active admin keys are locked while counting, so two admins
 * revoking each other's keys at once cannot both succeed.
 */
export async function revokeKey(db: Db, id: string, customerId?: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const admins = await trx
      .selectFrom('api_keys')
      .select('id')
      .where('role', '=', 'admin')
      .where('revoked_at', 'is', null)
      .forUpdate()
      .execute();
    if (admins.length === 1 && admins[0]!.id === id) throw new AppError('LAST_ADMIN_KEY');
    let query = trx
      .updateTable('api_keys')
      .set({ revoked_at: new Date() })
      .where('id', '=', id)
      .where('revoked_at', 'is', null);
    if (customerId) query = query.where('customer_id', '=', customerId);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  });
}

export async function listKeys(db: Db, filter: { customerId?: string; role?: KeyRole }) {
  let query = db
    .selectFrom('api_keys')
    .select(['id', 'role', 'customer_id', 'name', 'prefix', 'created_at', 'revoked_at']);
  if (filter.customerId) query = query.where('customer_id', '=', filter.customerId);
  if (filter.role) query = query.where('role', '=', filter.role);
  return query.orderBy('created_at').execute();
}

/**
 * The admin token. With IMAGELAKE_ADMIN_TOKEN set, that token is the admin key (its hash is stored
 * so it works like any other key), and a start restores it if it was revoked. Without it, the first start generates one and returns it so it
 * can be printed exactly once; only its hash is kept.
 */
export async function ensureAdminKey(
  db: Db,
  configured: string | undefined,
  log?: Logger,
): Promise<string | undefined> {
  if (configured) {
    // The configured token always works after a restart: revoked, it is restored (and said so).
    const restored = await db
      .updateTable('api_keys')
      .set({ revoked_at: null })
      .where('hash', '=', hashKey(configured))
      .where('role', '=', 'admin')
      .where('revoked_at', 'is not', null)
      .returning('id')
      .executeTakeFirst();
    if (restored) {
      log?.warn(
        { keyId: restored.id },
        'the IMAGELAKE_ADMIN_TOKEN key had been revoked; it is active again because it is configured',
      );
    }
    // Several processes starting at once on an empty catalog all try this: the first one wins.
    await db
      .insertInto('api_keys')
      .values({
        id: randomUUID(),
        role: 'admin',
        customer_id: null,
        name: 'IMAGELAKE_ADMIN_TOKEN',
        hash: hashKey(configured),
        prefix: configured.slice(0, PREFIX.admin.length + 6),
        revoked_at: null,
      })
      .onConflict((oc) => oc.column('hash').doNothing())
      .execute();
    return undefined;
  }
  const any = await db
    .selectFrom('api_keys')
    .select('id')
    .where('role', '=', 'admin')
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  if (any) return undefined;
  const issued = await issueKey(db, 'admin', { name: 'generated at first start' });
  return issued.key;
}
