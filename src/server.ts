import type pg from 'pg';
import pino, { type Logger } from 'pino';
import { analystPool, analystUrl, ensureAnalystRole } from './analytics/analyst-role.ts';
import { exportAnalytics } from './analytics/export.ts';
import { buildApp } from './api/app.ts';
import { Drain } from './api/drain.ts';
import { buildOpsApp } from './api/ops.ts';
import { ensureAdminKey } from './catalog/api-keys.ts';
import type { Db } from './catalog/database.ts';
import { openCatalog } from './catalog/open.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config/config.ts';
import type { EventPublisher } from './events/kafka-publisher.ts';
import { tuneGarbageCollection } from './gc-tuning.ts';
import { CustomerLimits } from './ingest/customer-limits.ts';
import type { KafkaIngest } from './ingest/kafka/consumer.ts';
import { Lander } from './ingest/land.ts';
import { TusUploads } from './ingest/tus.ts';
import { CatalogLocker } from './ingest/tus-locker.ts';
import { openTusStorage } from './ingest/tus-store.ts';
import { UploadSlots } from './ingest/upload-slots.ts';
import { Uploads } from './ingest/uploads.ts';
import { meteredLake } from './lake/metered.ts';
import { openLake } from './lake/open.ts';
import type { Lake } from './lake/port.ts';
import { createMetrics } from './observability/metrics.ts';
import { logTraceFields, tracingOn } from './observability/tracing.ts';
import { ProcessingPool } from './processing/pool.ts';
import { Processors } from './processing/processors/chain.ts';
import { recordDeclarations } from './processing/processors/declarations.ts';
import { Runner } from './processing/runner.ts';
import { purgeExpired } from './retention/purge.ts';
import type { Receipt } from './retention/receipts.ts';
import { Scheduler, withSchedulerLock } from './retention/scheduler.ts';
import { WebhookDispatcher } from './webhooks/dispatcher.ts';

export const ROLES = ['api', 'worker', 'scheduler', 'kafka', 'webhooks'] as const;
export type Role = (typeof ROLES)[number];

export interface RunningServer {
  /** The API's base URL when the api role runs. */
  url: string | undefined;
  /** Without the api role: where /healthz, /readyz and /metrics are served. */
  opsUrl: string | undefined;
  lake: Lake;
  db: Db;
  /** Runs the retention purge now (under the scheduler's lock); undefined when another process is purging. */
  purgeNow(): Promise<Receipt | undefined>;
  /** A freshly generated admin token, when this start made one (printed once, never stored). */
  generatedAdminToken: string | undefined;
  /**
   * On the embedded catalog: resolves, with why, if its PostgreSQL ends on its own (logged here as
   * an error). Nothing works without the catalog, so `serve` stops then, and exits 1 for a
   * supervisor to start it again. Undefined on IMAGELAKE_DATABASE_URL, where the pool reconnects.
   */
  catalogEnded: Promise<string> | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  roles?: readonly Role[];
  log?: Logger;
  clock?: Clock;
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const roles = new Set(options.roles ?? ROLES);
  // Only in a process that lands from Kafka and takes no uploads: the setting lets dead Buffers wait
  // longer, which under 50 concurrent photo uploads held 200-300 MB more (bench:memory), while a
  // Kafka landing gains the most from it (bench:kafka). See gc-tuning.ts.
  if (roles.has('kafka') && !roles.has('api')) tuneGarbageCollection();
  // With tracing on, each line logged inside a span names it (trace_id, span_id), so a log line
  // leads to its trace and back.
  const log =
    options.log ??
    pino({ level: config.logLevel, name: 'imagelake', mixin: tracingOn() ? logTraceFields : undefined });
  const clock = options.clock ?? systemClock;
  const stops: Array<() => Promise<void>> = [];
  // Readiness answers 503 from the first moment of a shutdown, so load balancers look elsewhere.
  const drain = new Drain();
  const stopAll = async () => {
    drain.announce();
    for (const stop of stops.reverse())
      await stop().catch((error) => log.error({ err: error }, 'shutdown step failed'));
  };

  try {
    // Processors start before anything else, so a broken one stops the boot before any image is taken.
    const metrics = createMetrics();
    let processors = Processors.none(log);
    if (roles.has('worker') && config.processors.length) {
      processors = await Processors.open(config.processors, {
        log,
        metrics,
        source: config.processorsSource,
      });
      const started = processors;
      stops.push(() => started.close());
      log.info({ processors: processors.describe() }, 'processors started');
    }
    const catalog = await openCatalog(config, { log, purpose: 'serve' });
    stops.push(() => catalog.close());
    const { db, pool } = catalog;
    const generatedAdminToken = await ensureAdminKey(db, config.adminToken, log);
    let analyst: { pool: pg.Pool; url: string } | undefined;
    if (roles.has('api')) {
      const credentials = await ensureAnalystRole(db, log, config.analytics.sqlTimeoutMs);
      if (credentials) {
        const url = analystUrl(catalog.url, credentials);
        analyst = { pool: analystPool(url, { max: 4, waitMs: config.analytics.sqlTimeoutMs }), url };
        const pool = analyst.pool;
        stops.push(() => pool.end());
      }
    }

    const store = await openLake(config);
    await store.check();
    // Counted by operation in /metrics. Resumable uploads' parts are written by the tus store's own
    // client (not counted); the api takes them into the lake, and the scheduler's purge deletes the
    // abandoned ones.
    const lake = meteredLake(store, metrics);
    const tusStorage = await openTusStorage(store, { expiryMs: config.tus.expiryMs, s3: config.s3 });

    if (roles.has('worker')) {
      await recordDeclarations(db, processors, clock.now());
      const processing = new ProcessingPool({
        threads: config.workers.threads,
        expressThreads: config.workers.express,
        timeoutMs: config.workers.jobTimeoutMs,
      });
      stops.push(() => processing.close());
      const listener = catalog.listener({ log, metrics });
      listener.start();
      stops.push(() => listener.close());
      const runner = new Runner({
        db,
        lake,
        pool: processing,
        clock,
        log,
        metrics,
        processors,
        subscribe: (wake) => listener.subscribe(wake),
        options: {
          concurrency: config.workers.concurrency,
          express: config.workers.express,
          leaseMs: config.workers.leaseMs,
          pollIntervalMs: config.workers.pollIntervalMs,
          limits: { maxPixels: config.limits.maxPixels, maxFrames: config.limits.maxFrames },
          // Outcomes are announced only where someone can publish them.
          eventsTopic: config.kafka.brokers.length ? config.kafka.eventsTopic || undefined : undefined,
          retentionMs: config.retentionMs,
          maxAttempts: config.workers.maxAttempts,
          reprocessWindow: config.workers.reprocessWindow,
          nearDistance: config.nearDistance,
        },
      });
      runner.start();
      stops.push(() => runner.stop());
    }

    const purge = () =>
      purgeExpired({
        claimPrefixes: config.kafka.claimPrefixes,
        db,
        lake,
        clock,
        log,
        metrics,
        retentionMs: config.retentionMs,
        statsRetentionMs: config.statsRetentionMs,
        tus: { storage: tusStorage, expiryMs: config.tus.expiryMs },
      });
    const purgeNow = async () => {
      const result = await withSchedulerLock(pool, purge);
      return result.ran ? result.value : undefined;
    };
    const exportParquet = () => exportAnalytics({ db, lake, clock, log });
    const exportNow = async () => {
      const result = await withSchedulerLock(pool, exportParquet);
      return result.ran ? result.value : undefined;
    };
    if (roles.has('scheduler')) {
      const exporter = new Scheduler({
        pool,
        log,
        metrics,
        intervalMs: config.analytics.exportIntervalMs,
        work: exportParquet,
        name: 'parquet export',
      });
      exporter.start();
      stops.push(() => exporter.stop());
      const scheduler = new Scheduler({
        pool,
        log,
        metrics,
        intervalMs: config.purgeIntervalMs,
        work: purge,
      });
      scheduler.start();
      stops.push(() => scheduler.stop());
    }

    if (roles.has('webhooks')) {
      const dispatcher = new WebhookDispatcher({ db, log, metrics, clock, config: config.webhooks });
      dispatcher.start();
      stops.push(() => dispatcher.stop());
    }

    const customerLimits = new CustomerLimits(db, config.limits);
    const lander = new Lander({
      customerLimits,
      db,
      lake,
      clock,
      log,
      metrics,
      limits: { maxBytes: config.limits.maxBytes, maxQueueDepth: config.limits.maxQueueDepth },
      maxAttempts: config.workers.maxAttempts,
      retentionMs: config.retentionMs,
    });

    let ingest: KafkaIngest | undefined;
    let publisher: EventPublisher | undefined;
    if (roles.has('kafka') && config.kafka.brokers.length) {
      // The Kafka client is loaded only where Kafka is used: about 10 MB of heap otherwise held (and
      // marked at every full collection) by every process of a deployment without it.
      const [{ KafkaIngest }, { EventPublisher }] = await Promise.all([
        import('./ingest/kafka/consumer.ts'),
        import('./events/kafka-publisher.ts'),
      ]);
      ingest = new KafkaIngest({
        config: config.kafka,
        db,
        lake,
        lander,
        log,
        metrics,
        retentionMs: config.retentionMs,
        maxQueueDepth: config.limits.maxQueueDepth,
      });
      await ingest.start();
      const consuming = ingest;
      stops.push(() => consuming.stop());
      if (config.kafka.eventsTopic) {
        const events = new EventPublisher({ db, log, metrics, config: config.kafka });
        events.start();
        stops.push(() => events.stop());
        publisher = events;
      }
    }

    const consumer = ingest;
    const ready = async () => {
      if (drain.stopping) throw new Error('shutting down: finishing the requests in hand');
      await catalog.check();
      await lake.check();
      const kafkaProblem = consumer?.notReady();
      if (kafkaProblem) throw new Error(kafkaProblem);
      // Events that cannot be published wait in the outbox; images still land, so this is said, not failed.
      const events = publisher?.problem();
      return {
        catalog: 'ok',
        lake: 'ok',
        ...(consumer ? { kafka: 'ok' } : {}),
        ...(publisher ? { events: events ?? 'ok' } : {}),
      };
    };
    let url: string | undefined;
    let opsUrl: string | undefined;
    if (roles.has('api')) {
      const uploads = new Uploads({
        db,
        lake,
        clock,
        lander,
        limits: {
          maxBytes: config.limits.maxBytes,
          sessions: config.limits.uploadSessions,
          stagedBytes: config.limits.stagedBytes,
        },
      });
      // Each upload in progress holds one connection of its own pool for its lock.
      const lockPool = catalog.lockPool(Math.max(4, config.limits.concurrentUploads * 2));
      stops.push(() => lockPool.end());
      const tus = new TusUploads({
        db,
        lake,
        clock,
        log,
        lander,
        customerLimits,
        storage: tusStorage,
        // Longer than the body-idle timeout, which ends a request stuck on a dead connection.
        locker: new CatalogLocker(lockPool, config.http.bodyIdleTimeoutMs + 5_000),
        limits: {
          maxBytes: config.limits.maxBytes,
          open: config.limits.uploadSessions,
          openBytes: config.limits.stagedBytes,
        },
        expiryMs: config.tus.expiryMs,
        corsOrigins: config.corsOrigins,
      });
      const app = await buildApp({
        customerLimits,
        uploads,
        tus,
        uploadSlots: new UploadSlots(config.limits.concurrentUploads),
        config,
        db,
        lake,
        lander,
        clock,
        log,
        metrics,
        ready,
        purgeNow,
        exportNow,
        analyst,
        drain,
      });
      // Stop taking requests first (readiness, then refusals, then close), so nothing new lands
      // while the rest shuts down and every request in hand is answered.
      stops.push(() => drain.stop(app, config.shutdown, log));
      const address = await app.listen({ host: config.host, port: config.port });
      url = address.replace('[::1]', '127.0.0.1');
      log.info({ url, roles: [...roles] }, 'imagelake is serving');
    } else if (roles.size) {
      // Without the API, the same address serves health and metrics only: orchestrators probe
      // every process, and counters such as processor runs exist only where the work happens.
      const ops = await buildOpsApp({ config, db, clock, log, metrics, ready });
      stops.push(() => ops.close());
      const address = await ops.listen({ host: config.host, port: config.port });
      opsUrl = address.replace('[::1]', '127.0.0.1');
      log.info({ url: opsUrl, roles: [...roles] }, 'imagelake is serving health and metrics');
    }

    const catalogEnded = catalog.serverEnded?.then((why) => {
      log.error(
        { why },
        "the embedded PostgreSQL ended on its own (killed, crashed or out of memory): imagelake cannot run without its catalog and stops. Start it again (the catalog recovers at start); if it keeps ending, IMAGELAKE_LOG_LEVEL=debug shows PostgreSQL's own messages",
      );
      return why;
    });
    return { url, opsUrl, lake: store, db, purgeNow, generatedAdminToken, catalogEnded, stop: stopAll };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
