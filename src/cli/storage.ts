import type pg from 'pg';
import pino, { type Logger } from 'pino';
import { hasCustomers } from '../catalog/customers.ts';
import type { Db } from '../catalog/database.ts';
import { type Catalog, CatalogMissing, openCatalog } from '../catalog/open.ts';
import type { Config } from '../config/config.ts';
import { openLake } from '../lake/open.ts';
import type { Lake } from '../lake/port.ts';

export interface Storage {
  db: Db;
  pool: pg.Pool;
  lake: Lake;
  log: Logger;
  close(): Promise<void>;
}

/** Why an offline command will not run: a stable code and what to do about it. */
export class StorageError extends Error {
  readonly code: 'CATALOG_MISSING' | 'CATALOG_EMPTY' | 'LAKE_EMPTY';
  constructor(code: StorageError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

const SETTINGS =
  'Run it with the same IMAGELAKE_* settings as `imagelake serve` (IMAGELAKE_DATABASE_URL, or IMAGELAKE_DATA_DIR for the embedded catalog, and IMAGELAKE_LAKE_URL), from the same folder.';

/** Throws LAKE_EMPTY when the lake holds nothing at all: not the lake serve uses, most likely. */
export async function refuseEmptyLake(lake: Lake): Promise<void> {
  // serve writes a health marker into the lake at start, so even a lake without images has one.
  const first = await lake.list('')[Symbol.asyncIterator]().next();
  if (first.done)
    throw new StorageError(
      'LAKE_EMPTY',
      `The lake ${lake.describe()} holds no objects: is this the lake serve uses? ${SETTINGS} If it really is empty, pass --allow-empty.`,
    );
}

/**
 * The catalog and the lake, for commands that read storage directly (audits must not trust an API).
 * Only `serve` creates a catalog: here an embedded one must exist already (the one a running `serve`
 * uses, or one it left stopped in the data dir), and an empty catalog or lake is refused unless
 * allowEmpty, because a check run against the wrong place would otherwise pass on nothing.
 */
export async function openStorage(config: Config, options: { allowEmpty?: boolean } = {}): Promise<Storage> {
  const log = pino({ level: 'warn', name: 'imagelake' }, pino.destination(2));
  let catalog: Catalog;
  try {
    // Connected as serve connects (TLS CA, insecure flag, statement timeout), with a small pool.
    catalog = await openCatalog(config, { log, purpose: 'command', poolSize: 4 });
  } catch (error) {
    if (error instanceof CatalogMissing)
      throw new StorageError('CATALOG_MISSING', `${error.message} ${SETTINGS}`);
    throw error;
  }
  const { db, pool, where } = catalog;
  const close = () => catalog.close();
  try {
    const lake = await openLake(config);
    if (!options.allowEmpty) {
      if (!(await hasCustomers(db)))
        throw new StorageError(
          'CATALOG_EMPTY',
          `${where} has no customers: is this the catalog serve uses? ${SETTINGS} If it really is empty, pass --allow-empty.`,
        );
      await refuseEmptyLake(lake);
    }
    return { db, pool, lake, log, close };
  } catch (error) {
    await close();
    throw error;
  }
}
