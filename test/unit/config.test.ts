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
  it('has defaults that need nothing set', () => {
    const config = loadConfig({});
    assert.equal(config.retentionMs, 7 * 86_400_000);
    assert.equal(config.purgeIntervalMs, 5 * 60_000);
    assert.equal(config.databaseUrl, undefined);
    assert.ok(config.dataDir.endsWith('/data'));
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
