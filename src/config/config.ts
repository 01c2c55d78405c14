// Every IMAGELAKE_* setting in one file on purpose (over 350 lines): the Config type, its defaults and
// the checks that report every problem at once belong together, and nothing else reads process.env.
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import {
  loadProcessorsFile,
  modulesAsSpecs,
  ProcessorConfigError,
  type ProcessorSpec,
} from '../processing/processors/spec.ts';
import { parseBytes, parseDuration } from './duration.ts';

/** Everything the platform can be told, with its defaults. One schema; every problem is reported at once. */
export interface Config {
  dataDir: string;
  databaseUrl: string | undefined;
  /** s3://bucket/prefix or file:///path; undefined: a folder in the data dir. */
  lakeUrl: string | undefined;
  database: {
    poolSize: number;
    statementTimeoutMs: number;
    tlsCa: string | undefined;
    tlsInsecure: boolean;
    /** Hot statements prepared once per session; off behind a transaction-mode pooler older than PgBouncer 1.21. */
    prepared: boolean;
    /** The embedded PostgreSQL's port; undefined: the one saved in the data dir, else 55432 or a free one. */
    embeddedPort: number | undefined;
  };
  /**
   * For an s3:// lake: a non-AWS endpoint (MinIO, GCS, R2), whether to use path-style addressing, and
   * the region. Credentials are the AWS SDK's own (AWS_ACCESS_KEY_ID, profiles, instance roles).
   */
  s3: S3Settings;
  adminToken: string | undefined;
  host: string;
  port: number;
  logLevel: string;
  retentionMs: number;
  /** How long daily aggregates (no image data) are kept. */
  statsRetentionMs: number;
  purgeIntervalMs: number;
  /**
   * Near-duplicates: two images whose perceptual hashes differ in at most this many of their 64 bits
   * (0 to 15). The default is chosen from bench/phash-robustness.ts on the corpus (README).
   */
  nearDistance: number;
  limits: {
    maxBytes: number;
    maxPixels: number;
    maxFrames: number;
    maxQueueDepth: number;
    /** A customer's own share of the queue (waiting images); past it only that customer is refused. */
    maxQueueDepthPerCustomer: number;
    /** Default rate limits per customer (0: none) and their burst, in seconds of the rate. */
    rateUploads: number;
    rateBytes: number;
    rateBurstSeconds: number;
    /** Default quotas per customer per UTC month (0: none). */
    monthlyImages: number;
    monthlyBytes: number;
    /** Uploads in progress at once per customer in each API process; more answer 429. */
    concurrentUploads: number;
    /** Direct-upload sessions open at once per customer, and the bytes they may hold staged. */
    uploadSessions: number;
    stagedBytes: number;
  };
  /** Resumable (tus) uploads: how long an unfinished one may be resumed before the purge deletes it. */
  tus: { expiryMs: number };
  /** Web origins allowed to upload from a browser (CORS on /v1/tus); empty: none. */
  corsOrigins: string[];
  /** How long a client may take to send its request; none is unbounded. */
  http: { headersTimeoutMs: number; bodyIdleTimeoutMs: number; requestTimeoutMs: number };
  workers: {
    threads: number;
    concurrency: number;
    /** Express lanes: jobs (and threads) kept for customers with nothing running; 0 turns the lane off. */
    express: number;
    jobTimeoutMs: number;
    maxAttempts: number;
    leaseMs: number;
    pollIntervalMs: number;
    reprocessWindow: number;
  };
  /** The company's processors, from IMAGELAKE_PROCESSORS_FILE (or the IMAGELAKE_PROCESSORS shorthand). */
  processors: ProcessorSpec[];
  /** Where they were declared, for error messages. */
  processorsSource: string;
  kafka: KafkaConfig;
  analytics: {
    sqlTimeoutMs: number;
    sqlMaxRows: number;
    /** The most bytes one /v1/sql answer may have. */
    sqlMaxBytes: number;
    /** Queries one key may run at once on /v1/sql (per API process). */
    sqlConcurrency: number;
    exportIntervalMs: number;
  };
  webhooks: WebhookConfig;
  /** On SIGTERM an api process answers /readyz 503 for drainDelayMs, then finishes what it holds within graceMs. */
  shutdown: { graceMs: number; drainDelayMs: number };
}

export interface S3Settings {
  endpoint: string | undefined;
  /** 'true' or 'false' as given; undefined: path-style whenever an endpoint is given. */
  pathStyle: string | undefined;
  region: string;
}

export interface KafkaConfig {
  /** Empty: Kafka is off and the `kafka` role does nothing. */
  brokers: string[];
  /** Every topic consumed, the bulk ones included. */
  topics: string[];
  /** Topics whose images are bulk work (IMAGELAKE_KAFKA_BULK_TOPICS): processed only when no interactive work waits. */
  bulkTopics: string[];
  groupId: string;
  clientId: string;
  /** Suffix of each topic's dead-letter topic. */
  dlqSuffix: string;
  /** Where image.processed / image.failed events go; empty: no events. */
  eventsTopic: string;
  sasl:
    | { mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512'; username: string; password: string }
    | undefined;
  tls: { ca: string | undefined; rejectUnauthorized: boolean } | undefined;
  /** Lake key prefixes a claim check may point into; nothing else is ever fetched. */
  claimPrefixes: string[];
  /** Whether missing image and events topics are created (dead-letter topics always are). */
  createTopics: boolean;
  /** Partitions and replication factor of the topics imagelake creates; -1: the broker's default. */
  topicPartitions: number;
  topicReplicas: number;
  /** Messages landing at once per process. */
  concurrency: number;
}

/** Webhook delivery (webhooks/): what URLs may be called, and how hard. */
export interface WebhookConfig {
  /** http:// URLs accepted besides https:// (IMAGELAKE_WEBHOOK_ALLOW_HTTP). */
  allowHttp: boolean;
  /** Loopback, private, link-local and metadata addresses accepted (IMAGELAKE_WEBHOOK_ALLOW_PRIVATE). */
  allowPrivate: boolean;
  /** One attempt's time limit, connect to the last byte read. */
  timeoutMs: number;
  /** Deliveries in flight per dispatcher process, and per endpoint across every process. */
  concurrency: number;
  perEndpoint: number;
  /** An endpoint whose every attempt fails for this long is disabled. */
  disableAfterMs: number;
  /** Endpoints one customer may register. */
  maxEndpoints: number;
}

type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Measured on the corpus by bench/phash-robustness.ts: the README gives the distributions. */
export const DEFAULT_NEAR_DISTANCE = 10;

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read = <T>(name: string, fallback: string, parse: (v: string) => T | undefined, hint: string): T => {
    const raw = env[name]?.trim() || fallback;
    const value = parse(raw);
    if (value === undefined) {
      problems.push(`${name}=${JSON.stringify(raw)} is not ${hint}`);
      return parse(fallback) as T;
    }
    return value;
  };
  const int = (min: number) => (v: string) => (/^\d+$/.test(v) && Number(v) >= min ? Number(v) : undefined);
  const duration = (v: string) => {
    const ms = parseDuration(v);
    return ms !== undefined && ms > 0 ? ms : undefined;
  };
  const rate = (v: string) => (/^\d+(\.\d+)?$/.test(v) ? Number(v) : undefined);
  const cores = availableParallelism();
  const maxQueueDepth = read('IMAGELAKE_MAX_QUEUE_DEPTH', '10000', int(1), 'a whole number of jobs');

  const config: Config = {
    dataDir: resolve(env.IMAGELAKE_DATA_DIR?.trim() || './data'),
    databaseUrl: env.IMAGELAKE_DATABASE_URL?.trim() || undefined,
    lakeUrl: env.IMAGELAKE_LAKE_URL?.trim() || undefined,
    database: {
      poolSize: read('IMAGELAKE_DATABASE_POOL_SIZE', '20', int(1), 'a whole number of connections'),
      statementTimeoutMs: read(
        'IMAGELAKE_DATABASE_STATEMENT_TIMEOUT',
        '60s',
        duration,
        'a duration such as 60s',
      ),
      tlsCa: env.IMAGELAKE_DATABASE_TLS_CA?.trim() || undefined,
      tlsInsecure: env.IMAGELAKE_DATABASE_TLS_INSECURE === 'true',
      prepared: env.IMAGELAKE_DATABASE_PREPARED?.trim() !== 'false',
      embeddedPort: env.IMAGELAKE_POSTGRES_PORT?.trim()
        ? read(
            'IMAGELAKE_POSTGRES_PORT',
            '0',
            (v) => (/^\d+$/.test(v) && Number(v) < 65536 ? Number(v) : undefined),
            'a port number (0: a free one at every start)',
          )
        : undefined,
    },
    s3: {
      endpoint:
        env.IMAGELAKE_S3_ENDPOINT?.trim() ||
        env.AWS_ENDPOINT_URL_S3?.trim() ||
        env.AWS_ENDPOINT_URL?.trim() ||
        undefined,
      pathStyle: env.IMAGELAKE_S3_PATH_STYLE?.trim() || undefined,
      region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    },
    adminToken: env.IMAGELAKE_ADMIN_TOKEN?.trim() || undefined,
    host: env.IMAGELAKE_HOST?.trim() || '127.0.0.1',
    port: read('IMAGELAKE_PORT', '8080', int(0), 'a port number'),
    logLevel: read(
      'IMAGELAKE_LOG_LEVEL',
      'info',
      (v) => (['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v) ? v : undefined),
      'one of fatal, error, warn, info, debug, trace, silent',
    ),
    retentionMs: read('IMAGELAKE_RETENTION', '7d', duration, 'a duration such as 7d, 12h or 90s'),
    statsRetentionMs: read('IMAGELAKE_STATS_RETENTION', '400d', duration, 'a duration such as 400d'),
    purgeIntervalMs: read('IMAGELAKE_PURGE_INTERVAL', '5m', duration, 'a duration such as 5m or 30s'),
    nearDistance: read(
      'IMAGELAKE_NEAR_DISTANCE',
      String(DEFAULT_NEAR_DISTANCE),
      (v) => (/^\d+$/.test(v) && Number(v) <= 15 ? Number(v) : undefined),
      'a whole number of bits from 0 to 15',
    ),
    limits: {
      maxBytes: read('IMAGELAKE_MAX_BYTES', '64MiB', parseBytes, 'a size such as 64MiB'),
      maxPixels: read('IMAGELAKE_MAX_PIXELS', '100000000', int(1), 'a whole number of pixels'),
      maxFrames: read('IMAGELAKE_MAX_FRAMES', '200', int(1), 'a whole number of frames'),
      maxQueueDepth,
      // A quarter of the global limit by default: one customer's backlog leaves room for the others.
      maxQueueDepthPerCustomer: read(
        'IMAGELAKE_MAX_QUEUE_DEPTH_PER_CUSTOMER',
        String(Math.max(1, Math.ceil(maxQueueDepth / 4))),
        int(1),
        'a whole number of jobs',
      ),
      rateUploads: read('IMAGELAKE_RATE_UPLOADS', '0', rate, 'a number of uploads a second (0: no limit)'),
      rateBytes: read('IMAGELAKE_RATE_BYTES', '0', parseBytes, 'a size a second such as 10MiB (0: no limit)'),
      rateBurstSeconds: read('IMAGELAKE_RATE_BURST_SECONDS', '2', int(1), 'a whole number of seconds'),
      monthlyImages: read(
        'IMAGELAKE_QUOTA_MONTHLY_IMAGES',
        '0',
        int(0),
        'a whole number of images (0: no quota)',
      ),
      monthlyBytes: read(
        'IMAGELAKE_QUOTA_MONTHLY_BYTES',
        '0',
        parseBytes,
        'a size such as 100GiB (0: no quota)',
      ),
      concurrentUploads: read('IMAGELAKE_UPLOADS_PER_CUSTOMER', '16', int(1), 'a whole number of uploads'),
      uploadSessions: read('IMAGELAKE_UPLOAD_SESSIONS', '100', int(1), 'a whole number of sessions'),
      stagedBytes: read('IMAGELAKE_UPLOAD_STAGED_BYTES', '4GiB', parseBytes, 'a size such as 4GiB'),
    },
    tus: { expiryMs: read('IMAGELAKE_TUS_EXPIRY', '24h', duration, 'a duration such as 24h') },
    corsOrigins: (env.IMAGELAKE_CORS_ORIGINS ?? '')
      .split(',')
      .map((v) => v.trim().replace(/\/+$/, ''))
      .filter(Boolean),
    http: {
      headersTimeoutMs: read('IMAGELAKE_HEADERS_TIMEOUT', '30s', duration, 'a duration such as 30s'),
      bodyIdleTimeoutMs: read('IMAGELAKE_BODY_IDLE_TIMEOUT', '30s', duration, 'a duration such as 30s'),
      // Generous: a 64 MiB image over a slow link (200 KiB/s) still fits.
      requestTimeoutMs: read('IMAGELAKE_REQUEST_TIMEOUT', '10m', duration, 'a duration such as 10m'),
    },
    workers: {
      threads: read('IMAGELAKE_WORKER_THREADS', String(cores), int(1), 'a whole number of threads'),
      concurrency: read('IMAGELAKE_WORKER_CONCURRENCY', String(cores * 2), int(1), 'a whole number of jobs'),
      express: read('IMAGELAKE_WORKER_EXPRESS', '1', int(0), 'a whole number of jobs (0 turns the lane off)'),
      jobTimeoutMs: read('IMAGELAKE_JOB_TIMEOUT', '60s', duration, 'a duration such as 60s'),
      maxAttempts: read('IMAGELAKE_JOB_ATTEMPTS', '3', int(1), 'a whole number of attempts'),
      // Renewed every third of itself while a job runs, so it bounds how long a dead worker's jobs wait.
      leaseMs: read('IMAGELAKE_JOB_LEASE', '30s', duration, 'a duration such as 30s'),
      pollIntervalMs: read('IMAGELAKE_POLL_INTERVAL', '1s', duration, 'a duration such as 1s'),
      // A reprocess run keeps at most this many jobs queued, so uploads never wait behind it.
      reprocessWindow: read('IMAGELAKE_REPROCESS_WINDOW', '256', int(1), 'a whole number of jobs'),
    },
    processors: [],
    processorsSource: '',
    kafka: readKafka(env, problems, read, int),
    analytics: {
      sqlTimeoutMs: read('IMAGELAKE_SQL_TIMEOUT', '10s', duration, 'a duration such as 10s'),
      sqlMaxRows: read('IMAGELAKE_SQL_MAX_ROWS', '10000', int(1), 'a whole number of rows'),
      sqlMaxBytes: read('IMAGELAKE_SQL_MAX_BYTES', '32MiB', parseBytes, 'a size such as 32MiB'),
      sqlConcurrency: read('IMAGELAKE_SQL_CONCURRENCY', '2', int(1), 'a whole number of queries'),
      exportIntervalMs: read('IMAGELAKE_EXPORT_INTERVAL', '1h', duration, 'a duration such as 1h'),
    },
    webhooks: readWebhooks(read, int, duration),
    shutdown: {
      graceMs: read('IMAGELAKE_SHUTDOWN_GRACE', '30s', duration, 'a duration such as 30s'),
      drainDelayMs: read('IMAGELAKE_DRAIN_DELAY', '5s', parseDuration, 'a duration such as 5s (0 for none)'),
    },
  };
  if (config.http.headersTimeoutMs > config.http.requestTimeoutMs) {
    problems.push('IMAGELAKE_HEADERS_TIMEOUT must not be longer than IMAGELAKE_REQUEST_TIMEOUT');
  }
  for (const origin of config.corsOrigins)
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin))
      problems.push(
        `IMAGELAKE_CORS_ORIGINS: "${origin}" is not an origin such as https://app.example.com (or *)`,
      );
  readProcessors(env, config, problems);
  if (config.lakeUrl && !/^(s3:\/\/[^/]+|file:\/\/\/)/.test(config.lakeUrl)) {
    problems.push(
      `IMAGELAKE_LAKE_URL=${JSON.stringify(config.lakeUrl)} is not s3://bucket/prefix or file:///path`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function readKafka(
  env: Env,
  problems: string[],
  read: <T>(name: string, fallback: string, parse: (v: string) => T | undefined, hint: string) => T,
  int: (min: number) => (v: string) => number | undefined,
): KafkaConfig {
  const mechanism = env.IMAGELAKE_KAFKA_SASL_MECHANISM?.trim().toUpperCase();
  if (mechanism && !['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'].includes(mechanism)) {
    problems.push(
      `IMAGELAKE_KAFKA_SASL_MECHANISM=${JSON.stringify(mechanism)} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`,
    );
  }
  if (mechanism && !(env.IMAGELAKE_KAFKA_SASL_USERNAME && env.IMAGELAKE_KAFKA_SASL_PASSWORD)) {
    problems.push(
      'IMAGELAKE_KAFKA_SASL_MECHANISM needs IMAGELAKE_KAFKA_SASL_USERNAME and IMAGELAKE_KAFKA_SASL_PASSWORD',
    );
  }
  const list = (value: string | undefined, fallback: string) =>
    (value ?? fallback)
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean);
  const tlsOn =
    ['1', 'true', 'yes'].includes((env.IMAGELAKE_KAFKA_TLS ?? '').trim().toLowerCase()) ||
    Boolean(env.IMAGELAKE_KAFKA_TLS_CA);
  const kafka: KafkaConfig = {
    brokers: list(env.IMAGELAKE_KAFKA_BROKERS, ''),
    topics: [
      ...new Set([
        ...list(env.IMAGELAKE_KAFKA_TOPICS, 'images'),
        ...list(env.IMAGELAKE_KAFKA_BULK_TOPICS, ''),
      ]),
    ],
    bulkTopics: list(env.IMAGELAKE_KAFKA_BULK_TOPICS, ''),
    groupId: env.IMAGELAKE_KAFKA_GROUP?.trim() || 'imagelake',
    clientId: env.IMAGELAKE_KAFKA_CLIENT_ID?.trim() || 'imagelake',
    dlqSuffix: env.IMAGELAKE_KAFKA_DLQ_SUFFIX?.trim() || '.dlq',
    eventsTopic:
      env.IMAGELAKE_KAFKA_EVENTS_TOPIC === undefined
        ? 'imagelake.events'
        : env.IMAGELAKE_KAFKA_EVENTS_TOPIC.trim(),
    sasl: mechanism
      ? {
          mechanism: mechanism as 'PLAIN',
          username: env.IMAGELAKE_KAFKA_SASL_USERNAME ?? '',
          password: env.IMAGELAKE_KAFKA_SASL_PASSWORD ?? '',
        }
      : undefined,
    tls: tlsOn
      ? {
          ca: env.IMAGELAKE_KAFKA_TLS_CA?.trim() || undefined,
          rejectUnauthorized: env.IMAGELAKE_KAFKA_TLS_INSECURE !== 'true',
        }
      : undefined,
    claimPrefixes: list(env.IMAGELAKE_KAFKA_CLAIM_PREFIXES, 'claims/'),
    concurrency: read('IMAGELAKE_KAFKA_CONCURRENCY', '8', int(1), 'a whole number of messages'),
    ...readTopicCreation(env, problems, read, int, list(env.IMAGELAKE_KAFKA_BROKERS, '')),
  };
  for (const prefix of kafka.claimPrefixes) {
    if (!prefix.endsWith('/') || prefix.startsWith('/') || prefix.includes('..')) {
      problems.push(`IMAGELAKE_KAFKA_CLAIM_PREFIXES: "${prefix}" must be a lake folder such as claims/`);
    }
  }
  return kafka;
}

/**
 * Topic creation defaults to on only when every broker is on this machine: that is the dev broker
 * (`scripts/services/kafka`), where nobody else declares topics. Elsewhere topics are the operator's.
 */
function readTopicCreation(
  env: Env,
  problems: string[],
  read: <T>(name: string, fallback: string, parse: (v: string) => T | undefined, hint: string) => T,
  int: (min: number) => (v: string) => number | undefined,
  brokers: string[],
): Pick<KafkaConfig, 'createTopics' | 'topicPartitions' | 'topicReplicas'> {
  const local = brokers.length > 0 && brokers.every((b) => /^(127\.|localhost:|\[::1\]:)/.test(b));
  const raw = env.IMAGELAKE_KAFKA_CREATE_TOPICS?.trim().toLowerCase();
  const flag: Record<string, boolean> = {
    true: true,
    '1': true,
    yes: true,
    false: false,
    '0': false,
    no: false,
  };
  if (raw && !(raw in flag))
    problems.push(`IMAGELAKE_KAFKA_CREATE_TOPICS=${JSON.stringify(raw)} is not true or false`);
  return {
    createTopics: raw && raw in flag ? flag[raw]! : local,
    topicPartitions: read('IMAGELAKE_KAFKA_TOPIC_PARTITIONS', '3', int(1), 'a whole number of partitions'),
    topicReplicas: read(
      'IMAGELAKE_KAFKA_TOPIC_REPLICATION',
      '-1',
      (v) => (v === '-1' ? -1 : int(1)(v)),
      'a whole number of replicas, or -1 for the broker default',
    ),
  };
}

function readWebhooks(
  read: <T>(name: string, fallback: string, parse: (v: string) => T | undefined, hint: string) => T,
  int: (min: number) => (v: string) => number | undefined,
  duration: (v: string) => number | undefined,
): WebhookConfig {
  const bool = (v: string) => ({ true: true, '1': true, yes: true, false: false, '0': false, no: false })[v];
  return {
    allowHttp: read('IMAGELAKE_WEBHOOK_ALLOW_HTTP', 'false', bool, 'true or false'),
    allowPrivate: read('IMAGELAKE_WEBHOOK_ALLOW_PRIVATE', 'false', bool, 'true or false'),
    timeoutMs: read('IMAGELAKE_WEBHOOK_TIMEOUT', '15s', duration, 'a duration such as 15s'),
    concurrency: read('IMAGELAKE_WEBHOOK_CONCURRENCY', '64', int(1), 'a whole number of deliveries'),
    perEndpoint: read('IMAGELAKE_WEBHOOK_ENDPOINT_CONCURRENCY', '8', int(1), 'a whole number of deliveries'),
    disableAfterMs: read('IMAGELAKE_WEBHOOK_DISABLE_AFTER', '5d', duration, 'a duration such as 5d'),
    maxEndpoints: read('IMAGELAKE_WEBHOOK_MAX_ENDPOINTS', '20', int(1), 'a whole number of endpoints'),
  };
}

/** One place declares the processors: a file, or for modules with every default, a list of paths. */
function readProcessors(env: Env, config: Config, problems: string[]): void {
  const file = env.IMAGELAKE_PROCESSORS_FILE?.trim();
  const modules = (env.IMAGELAKE_PROCESSORS ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  const defaults = { timeoutMs: config.workers.jobTimeoutMs, concurrency: config.workers.threads };
  if (file && modules.length) {
    problems.push(
      'Set IMAGELAKE_PROCESSORS_FILE or IMAGELAKE_PROCESSORS, not both: declare every processor in the file.',
    );
    return;
  }
  try {
    if (file) {
      config.processorsSource = `IMAGELAKE_PROCESSORS_FILE=${file}`;
      config.processors = loadProcessorsFile(resolve(file), defaults);
    } else if (modules.length) {
      config.processorsSource = 'IMAGELAKE_PROCESSORS';
      config.processors = modulesAsSpecs(modules, defaults);
    }
  } catch (error) {
    if (!(error instanceof ProcessorConfigError)) throw error;
    problems.push(...error.problems.map((p) => `${config.processorsSource}: ${p}`));
  }
}
