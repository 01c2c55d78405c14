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

/**
 * The catalog and the lake, for commands that read storage directly (audits must not trust an API).
 * With embedded defaults it uses the PostgreSQL a running `serve` started, or starts one for itself.
 */
export async function openStorage(config: Config): Promise<Storage> {
  const log = pino({ level: 'warn', name: 'imagelake' }, pino.destination(2));
  let url = config.databaseUrl ?? runningEmbeddedUrl(config.dataDir);
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!url) {
    const embedded = await startEmbeddedPostgres(config.dataDir, log, config.database.embeddedPort);
    url = embedded.url;
    stopEmbedded = embedded.stop;
  }
  const { db, pool } = connect(url, { max: 4 });
  await migrate(db, log);
  return {
    db,
    pool,
    lake: openLake(config),
    log,
    close: async () => {
      await db.destroy();
      await stopEmbedded?.();
    },
  };
}
