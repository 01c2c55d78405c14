import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/config.ts';
import { formatDuration, parseBytes, parseDuration } from '../../src/config/duration.ts';

describe('durations and sizes', () => {
  it('reads the forms operators write', () => {
    assert.equal(parseDuration('7d'), 7 * 86_400_000);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('12h'), 43_200_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('60'), 60_000);
    assert.equal(parseDuration('7 days'), undefined);
    assert.equal(parseDuration('d7'), undefined);
    assert.equal(formatDuration(7 * 86_400_000), '7d');
    assert.equal(parseBytes('64MiB'), 64 * 1024 * 1024);
    assert.equal(parseBytes('512kb'), 512 * 1024);
    assert.equal(parseBytes('100'), 100);
    assert.equal(parseBytes('lots'), undefined);
  });
});

describe('config', () => {
  it('consumes the Kafka bulk topics too, and knows them as bulk', () => {
    const config = loadConfig({
      IMAGELAKE_KAFKA_TOPICS: 'images',
      IMAGELAKE_KAFKA_BULK_TOPICS: 'backfill, images',
    });
    assert.deepEqual(config.kafka.topics, ['images', 'backfill']);
    assert.deepEqual(config.kafka.bulkTopics, ['backfill', 'images']);
    assert.deepEqual(loadConfig({}).kafka.bulkTopics, []);
  });

  it('has defaults that need nothing set', () => {
    const config = loadConfig({});
    assert.equal(config.retentionMs, 7 * 86_400_000);
    assert.equal(config.purgeIntervalMs, 5 * 60_000);
    assert.equal(config.databaseUrl, undefined);
    assert.ok(config.dataDir.endsWith('/data'));
  });

  it('bounds every request and upload by default, and reads the limits', () => {
    const defaults = loadConfig({});
    assert.deepEqual(defaults.http, {
      headersTimeoutMs: 30_000,
      bodyIdleTimeoutMs: 30_000,
      requestTimeoutMs: 600_000,
    });
    assert.equal(defaults.limits.concurrentUploads, 16);
    assert.equal(defaults.limits.uploadSessions, 100);
    assert.equal(defaults.limits.stagedBytes, 4 * 1024 ** 3);
    const set = loadConfig({
      IMAGELAKE_REQUEST_TIMEOUT: '2m',
      IMAGELAKE_BODY_IDLE_TIMEOUT: '5s',
      IMAGELAKE_UPLOADS_PER_CUSTOMER: '4',
      IMAGELAKE_UPLOAD_STAGED_BYTES: '1GiB',
    });
    assert.equal(set.http.requestTimeoutMs, 120_000);
    assert.equal(set.http.bodyIdleTimeoutMs, 5_000);
    assert.equal(set.limits.concurrentUploads, 4);
    assert.equal(set.limits.stagedBytes, 1024 ** 3);
    assert.throws(
      () => loadConfig({ IMAGELAKE_HEADERS_TIMEOUT: '5m', IMAGELAKE_REQUEST_TIMEOUT: '1m' }),
      /IMAGELAKE_HEADERS_TIMEOUT must not be longer than IMAGELAKE_REQUEST_TIMEOUT/,
    );
    assert.throws(() => loadConfig({ IMAGELAKE_REQUEST_TIMEOUT: '0' }), /IMAGELAKE_REQUEST_TIMEOUT="0"/);
    assert.throws(
      () => loadConfig({ IMAGELAKE_UPLOADS_PER_CUSTOMER: '0' }),
      /IMAGELAKE_UPLOADS_PER_CUSTOMER/,
    );
  });

  it('reports every problem at once', () => {
    assert.throws(
      () =>
        loadConfig({ IMAGELAKE_RETENTION: 'forever', IMAGELAKE_PORT: 'http', IMAGELAKE_MAX_BYTES: 'big' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 3);
        assert.match(error.message, /IMAGELAKE_RETENTION="forever"/);
        assert.match(error.message, /IMAGELAKE_PORT/);
        assert.match(error.message, /IMAGELAKE_MAX_BYTES/);
        return true;
      },
    );
  });

  it('reads the shutdown settings: a drain delay may be 0, a grace period may not', () => {
    assert.deepEqual(loadConfig({}).shutdown, { graceMs: 30_000, drainDelayMs: 5_000 });
    assert.deepEqual(loadConfig({ IMAGELAKE_DRAIN_DELAY: '0s', IMAGELAKE_SHUTDOWN_GRACE: '45s' }).shutdown, {
      graceMs: 45_000,
      drainDelayMs: 0,
    });
    assert.throws(
      () => loadConfig({ IMAGELAKE_SHUTDOWN_GRACE: '0s', IMAGELAKE_DRAIN_DELAY: 'soon' }),
      (error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 2);
        return true;
      },
    );
  });
});

describe('analyst SQL and the embedded PostgreSQL settings', () => {
  it('defaults to a 32 MiB answer, two queries per key, and the port saved in the data dir', () => {
    const config = loadConfig({});
    assert.equal(config.analytics.sqlMaxBytes, 32 * 1024 * 1024);
    assert.equal(config.analytics.sqlConcurrency, 2);
    assert.equal(config.database.embeddedPort, undefined);
    const set = loadConfig({
      IMAGELAKE_SQL_MAX_BYTES: '1MiB',
      IMAGELAKE_SQL_CONCURRENCY: '5',
      IMAGELAKE_POSTGRES_PORT: '0',
    });
    assert.deepEqual(
      [set.analytics.sqlMaxBytes, set.analytics.sqlConcurrency, set.database.embeddedPort],
      [1024 * 1024, 5, 0],
    );
  });

  it('refuses values that are not sizes, counts or ports', () => {
    assert.throws(
      () =>
        loadConfig({
          IMAGELAKE_SQL_MAX_BYTES: 'huge',
          IMAGELAKE_SQL_CONCURRENCY: '0',
          IMAGELAKE_POSTGRES_PORT: '70000',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 3);
        assert.match(error.message, /IMAGELAKE_POSTGRES_PORT="70000" is not a port number/);
        return true;
      },
    );
  });
});

describe('resumable uploads and browser origins', () => {
  it('expires unfinished tus uploads after 24h by default and allows no browser origin', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.tus.expiryMs, 24 * 3_600_000);
    assert.deepEqual(defaults.corsOrigins, []);
    const set = loadConfig({
      IMAGELAKE_TUS_EXPIRY: '2h',
      IMAGELAKE_CORS_ORIGINS: 'https://app.example.com/, http://localhost:3000',
    });
    assert.equal(set.tus.expiryMs, 2 * 3_600_000);
    assert.deepEqual(set.corsOrigins, ['https://app.example.com', 'http://localhost:3000']);
    assert.deepEqual(loadConfig({ IMAGELAKE_CORS_ORIGINS: '*' }).corsOrigins, ['*']);
  });

  it('refuses an expiry that is no duration and an origin that is no origin, together', () => {
    assert.throws(
      () => loadConfig({ IMAGELAKE_TUS_EXPIRY: 'a day', IMAGELAKE_CORS_ORIGINS: 'app.example.com/path' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 2);
        assert.match(error.message, /IMAGELAKE_TUS_EXPIRY="a day"/);
        assert.match(error.message, /IMAGELAKE_CORS_ORIGINS: "app.example.com\/path"/);
        return true;
      },
    );
  });
});
