import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import type pg from 'pg';
import pino, { type Logger } from 'pino';
import { connect, type Db, migrate } from '../catalog/database.ts';
import { runningEmbeddedUrl, startEmbeddedPostgres } from '../catalog/embedded.ts';
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
  let url = config.databaseUrl ?? runningEmbeddedUrl(config.dataDir);
  let where = config.databaseUrl ? 'IMAGELAKE_DATABASE_URL' : `the embedded catalog in ${config.dataDir}`;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!url) {
    if (!existsSync(join(config.dataDir, 'postgres', 'PG_VERSION')))
      throw new StorageError(
        'CATALOG_MISSING',
        `No catalog in ${config.dataDir} (IMAGELAKE_DATA_DIR): imagelake serve has not run with this data dir. ${SETTINGS}`,
      );
    // serve is stopped: start its cluster for the length of this command (never a new one).
    const embedded = await startEmbeddedPostgres(config.dataDir, log, config.database.embeddedPort);
    url = embedded.url;
    stopEmbedded = embedded.stop;
    where = `the embedded catalog in ${config.dataDir}`;
  }
  const { db, pool } = connect(url, { max: 4 });
  const close = async () => {
    await db.destroy();
    await stopEmbedded?.();
  };
  try {
    const { rows } = await sql<{
      found: string | null;
    }>`select to_regclass('imagelake_migrations')::text as found`.execute(db);
    if (!rows[0]?.found)
      throw new StorageError(
        'CATALOG_MISSING',
        `${where} holds no imagelake catalog (imagelake serve has not run against it). ${SETTINGS}`,
      );
    // The catalog exists: bring it to this version's schema, as serve would.
    await migrate(db, log);
    const lake = openLake(config);
    if (!options.allowEmpty) {
      const customers = await db
        .selectFrom('customers')
        .select(db.fn.countAll<string>().as('n'))
        .executeTakeFirst();
      if (Number(customers?.n ?? 0) === 0)
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
