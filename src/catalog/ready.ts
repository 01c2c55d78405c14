import type { Db } from './database.ts';

/** For /readyz: throws unless the catalog answers and has been migrated (its migrations table is there). */
export async function checkCatalog(db: Db): Promise<void> {
  await db
    .selectFrom('imagelake_migrations' as never)
    .select((eb) => eb.fn.countAll().as('n'))
    .execute();
}
