import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import { catalogTls, connect, type Db, migrate } from './database.ts';
import { lockDataDir, runningEmbeddedUrl, startEmbeddedPostgres } from './embedded.ts';
import { JobListener, type JobListenerOptions } from './listener.ts';
import { checkCatalog } from './ready.ts';

/**
 * The one way into the catalog, for the server and every CLI command alike: the configured URL (with
 * its TLS CA, insecure flag, statement timeout and pool size), else the embedded PostgreSQL in the
 * data dir; migrated to this version's schema; with the LISTEN session and the readiness check made
 * on the same server with the same TLS.
 */
export interface Catalog {
  db: Db;
  pool: pg.Pool;
  /** The URL connected to: IMAGELAKE_DATABASE_URL, or the embedded server's. */
  url: string;
  /** Where the catalog is, for messages: 'IMAGELAKE_DATABASE_URL' or the embedded catalog's folder. */
  where: string;
  /** A LISTEN session for job notifications, connected like the pool (start it, close it). */
  listener(deps: Pick<JobListenerOptions, 'log' | 'metrics'>): JobListener;
  /**
   * A pool of its own, connected like the main one, for session locks held while a request runs
   * (resumable uploads): they never take the main pool's connections. The caller ends it.
   */
  lockPool(max: number): pg.Pool;
  /** Answers when the catalog answers a query on its schema; throws otherwise (readiness). */
  check(): Promise<void>;
  /** Closes the pool, then stops the embedded server and frees the data dir when this opened them. */
  close(): Promise<void>;
  /**
   * When this process started the embedded server: resolves, with why, if the server ends while the
   * catalog is open (nothing restarts it). Undefined for a catalog at IMAGELAKE_DATABASE_URL.
   */
  serverEnded: Promise<string> | undefined;
}

/** Why a command found no catalog to use (a command never creates one). */
export class CatalogMissing extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CatalogMissing';
  }
}

export interface OpenCatalogOptions {
  log: Logger;
  /**
   * serve: locks the data dir and creates the embedded catalog when there is none.
   * command: never creates one: uses the embedded server a running `serve` has on the data dir, or
   * starts the one it left stopped for the length of the command; throws CatalogMissing when there
   * is no cluster, or when the database holds no imagelake catalog (it is not migrated into one).
   */
  purpose: 'serve' | 'command';
  /** Connections in the pool; default: IMAGELAKE_DATABASE_POOL_SIZE. */
  poolSize?: number;
}

type CatalogConfig = Pick<Config, 'databaseUrl' | 'dataDir' | 'database'>;

export async function openCatalog(config: CatalogConfig, options: OpenCatalogOptions): Promise<Catalog> {
  const { log, purpose } = options;
  const stops: Array<() => Promise<void>> = [];
  // In the reverse order of opening; every step runs even when one before it fails.
  const stopAll = async () => {
    let failure: unknown;
    for (const stop of [...stops].reverse())
      await stop().catch((error) => {
        failure ??= error;
      });
    if (failure) throw failure;
  };
  let serverEnded: Promise<string> | undefined;
  /** Starts the embedded server on the data dir, to be stopped with the catalog; returns its URL. */
  const startEmbedded = async (): Promise<string> => {
    const embedded = await startEmbeddedPostgres(config.dataDir, log, config.database.embeddedPort);
    stops.push(() => embedded.stop());
    serverEnded = embedded.ended;
    return embedded.url;
  };
  try {
    let url = config.databaseUrl;
    const where = url ? 'IMAGELAKE_DATABASE_URL' : `the embedded catalog in ${config.dataDir}`;
    if (!url && purpose === 'serve') {
      stops.push(await lockDataDir(config.dataDir));
      url = await startEmbedded();
    }
    if (!url) url = runningEmbeddedUrl(config.dataDir);
    if (!url) {
      if (!existsSync(join(config.dataDir, 'postgres', 'PG_VERSION')))
        throw new CatalogMissing(
          `No catalog in ${config.dataDir} (IMAGELAKE_DATA_DIR): imagelake serve has not run with this data dir.`,
        );
      // serve is stopped: start its cluster for the length of this command (never a new one).
      url = await startEmbedded();
    }
    const tls = { tlsCa: config.database.tlsCa, tlsInsecure: config.database.tlsInsecure };
    const { db, pool } = connect(url, {
      max: options.poolSize ?? config.database.poolSize,
      statementTimeoutMs: config.database.statementTimeoutMs,
      prepared: config.database.prepared,
      ...tls,
    });
    stops.push(() => db.destroy());
    if (purpose === 'command') {
      const { rows } = await sql<{
        found: string | null;
      }>`select to_regclass('imagelake_migrations')::text as found`.execute(db);
      if (!rows[0]?.found)
        throw new CatalogMissing(
          `${where} holds no imagelake catalog (imagelake serve has not run against it).`,
        );
    }
    // The catalog exists (or was just made): bring it to this version's schema.
    await migrate(db, log);
    const listenUrl = url;
    return {
      db,
      pool,
      url,
      where,
      listener: (deps) => new JobListener({ url: listenUrl, ssl: catalogTls(tls), ...deps }),
      lockPool: (max) => connect(listenUrl, { max, ...tls }).pool,
      check: () => checkCatalog(db),
      close: stopAll,
      serverEnded,
    };
  } catch (error) {
    await stopAll().catch((stopError) => log.error({ err: stopError }, 'closing the catalog failed'));
    throw error;
  }
}
