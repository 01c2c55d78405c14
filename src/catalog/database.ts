import { readFileSync } from 'node:fs';
import { Kysely, Migrator, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { spreadCounterSlots } from './counter-slots.ts';
import * as initial from './migrations/0001_initial.ts';
import * as retention from './migrations/0002_retention.ts';
import * as outbox from './migrations/0003_outbox.ts';
import * as analytics from './migrations/0004_analytics.ts';
import * as settings from './migrations/0005_settings.ts';
import * as narrow from './migrations/0006_narrow_rollups.ts';
import * as monthly from './migrations/0007_monthly_customers.ts';
import * as uploads from './migrations/0008_uploads.ts';
import * as filterIndexes from './migrations/0009_rollup_filter_indexes.ts';
import * as reprocess from './migrations/0011_reprocess.ts';
import * as processorStats from './migrations/0012_processor_stats.ts';
import * as coveringIndexes from './migrations/0013_rollup_covering_indexes.ts';
import * as analystGuards from './migrations/0014_analyst_guards.ts';
import * as uploadBytes from './migrations/0015_upload_bytes.ts';
import * as uniqueCustomerNames from './migrations/0016_unique_customer_names.ts';
import * as fairQueue from './migrations/0020_fair_queue.ts';
import * as customerLimits from './migrations/0021_customer_limits.ts';
import * as usage from './migrations/0022_usage.ts';
import * as expressClaim from './migrations/0023_express_claim.ts';
import * as webhooks from './migrations/0024_webhooks.ts';
import * as tusUploads from './migrations/0025_tus_uploads.ts';
import * as nearDuplicates from './migrations/0026_near_duplicates.ts';
import * as traceContext from './migrations/0027_trace_context.ts';
import * as holds from './migrations/0028_holds.ts';
import * as failures from './migrations/0029_failures.ts';
import * as webhookTraceContext from './migrations/0030_webhook_trace_context.ts';
import * as webhookEndpointDispatchers from './migrations/0031_webhook_endpoint_dispatchers.ts';
import * as counterSlots from './migrations/0032_counter_slots.ts';
import * as queueVacuum from './migrations/0033_queue_vacuum.ts';
import * as webhookDue from './migrations/0034_webhook_due.ts';
import * as webhookDeliveryLog from './migrations/0035_webhook_delivery_log.ts';
import * as webhookWritten from './migrations/0036_webhook_written.ts';
import { prepareStatements } from './prepared-statements.ts';
import type { Database } from './schema.ts';
import { markCatalogError } from './unavailable.ts';

// DATE columns come back as 'YYYY-MM-DD' strings, not as local-midnight Dates that shift by timezone.
pg.types.setTypeParser(pg.types.builtins.DATE, (value) => value);

export type Db = Kysely<Database>;

export interface ConnectOptions {
  max?: number;
  /** Applied to every statement of the pool's sessions; a runaway query cannot hold the catalog. */
  statementTimeoutMs?: number;
  /** TLS to a managed PostgreSQL: a CA file to trust, or (for testing only) no verification. */
  tlsCa?: string;
  tlsInsecure?: boolean;
  /** Hot statements named, parsed once per session (prepared-statements.ts). Default on. */
  prepared?: boolean;
}

/** TLS settings for a connection to the catalog, from the options (undefined: as the URL says). */
export function catalogTls(options: Pick<ConnectOptions, 'tlsCa' | 'tlsInsecure'>): pg.ClientConfig['ssl'] {
  return options.tlsCa
    ? { ca: readFileSync(options.tlsCa, 'utf8') }
    : options.tlsInsecure
      ? { rejectUnauthorized: false }
      : undefined;
}

export function connect(url: string, options: ConnectOptions = {}): { db: Db; pool: pg.Pool } {
  const ssl = catalogTls(options);
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 20,
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    ...(ssl ? { ssl } : {}),
  });
  // An idle client that loses its server must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  if (options.prepared !== false) prepareStatements(pool);
  guardCatalogPool(pool);
  spreadCounterSlots(pool);
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), pool };
}

/**
 * Makes a pool's sessions survive their server going away. Errors raised while connecting or while a
 * session dies under a query are marked as the catalog's, so the API can answer CATALOG_UNAVAILABLE
 * for them (a bare ECONNREFUSED could be the lake's too), and a session in use that loses its server
 * no longer ends the process.
 */
export function guardCatalogPool(pool: pg.Pool): void {
  const marked = new WeakSet<pg.PoolClient>();
  const markClient = (client: pg.PoolClient | undefined) => {
    if (!client || marked.has(client)) return;
    marked.add(client);
    // The pool listens for errors only on idle clients. One in use that loses its server emits
    // 'error' too, and unheard that ends the process: the query in flight already fails with the
    // same error, and the pool drops the client when it comes back unqueryable.
    client.on('error', () => {});
    const query = client.query;
    client.query = function (this: pg.PoolClient, ...args: unknown[]) {
      const result = (query as (...a: unknown[]) => unknown).apply(this, args);
      if (result instanceof Promise) return result.catch((error) => Promise.reject(markCatalogError(error)));
      return result;
    } as typeof client.query;
  };
  const connectRaw = pool.connect.bind(pool) as (
    callback?: (error: Error | undefined, client: pg.PoolClient | undefined, done: () => void) => void,
  ) => Promise<pg.PoolClient> | undefined;
  pool.connect = ((
    callback?: (error: Error | undefined, client: pg.PoolClient | undefined, done: () => void) => void,
  ) => {
    if (callback)
      return connectRaw((error, client, done) => {
        markClient(client);
        callback(markCatalogError(error) as Error | undefined, client, done);
      });
    return connectRaw()!.then(
      (client) => {
        markClient(client);
        return client;
      },
      (error) => Promise.reject(markCatalogError(error)),
    );
  }) as typeof pool.connect;
}

/** Migrations are listed here, in order, so they ship inside the code and cannot go missing. */
const MIGRATIONS = {
  '0001_initial': initial,
  '0002_retention': retention,
  '0003_outbox': outbox,
  '0004_analytics': analytics,
  '0005_settings': settings,
  '0006_narrow_rollups': narrow,
  '0007_monthly_customers': monthly,
  '0008_uploads': uploads,
  '0009_rollup_filter_indexes': filterIndexes,
  '0011_reprocess': reprocess,
  '0012_processor_stats': processorStats,
  '0013_rollup_covering_indexes': coveringIndexes,
  '0014_analyst_guards': analystGuards,
  '0015_upload_bytes': uploadBytes,
  '0016_unique_customer_names': uniqueCustomerNames,
  '0020_fair_queue': fairQueue,
  '0021_customer_limits': customerLimits,
  '0022_usage': usage,
  '0023_express_claim': expressClaim,
  '0024_webhooks': webhooks,
  '0025_tus_uploads': tusUploads,
  '0026_near_duplicates': nearDuplicates,
  '0027_trace_context': traceContext,
  '0028_holds': holds,
  '0029_failures': failures,
  '0030_webhook_trace_context': webhookTraceContext,
  '0031_webhook_endpoint_dispatchers': webhookEndpointDispatchers,
  '0032_counter_slots': counterSlots,
  '0033_queue_vacuum': queueVacuum,
  '0034_webhook_due': webhookDue,
  '0035_webhook_delivery_log': webhookDeliveryLog,
  '0036_webhook_written': webhookWritten,
};

export async function migrate(db: Db, log: Logger): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => MIGRATIONS },
    migrationTableName: 'imagelake_migrations',
    migrationLockTableName: 'imagelake_migrations_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  for (const result of results ?? []) {
    if (result.status === 'Success') log.info({ migration: result.migrationName }, 'migration applied');
    if (result.status === 'Error') log.error({ migration: result.migrationName }, 'migration failed');
  }
  if (error) throw error;
}
