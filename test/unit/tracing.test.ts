import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  activeTraceId,
  contextOf,
  inSpan,
  linkTo,
  logTraceFields,
  startTracing,
  traceHeaders,
  traceparentOf,
  tracingOn,
  tracingWanted,
} from '../../src/observability/tracing.ts';

describe('tracing: on only when the standard OTEL_* settings ask', () => {
  it('is wanted with an OTLP endpoint or a traces exporter, and never with the SDK disabled', () => {
    assert.equal(tracingWanted({}), false);
    assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }), true);
    assert.equal(
      tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }),
      true,
    );
    assert.equal(tracingWanted({ OTEL_TRACES_EXPORTER: 'otlp' }), true);
    assert.equal(tracingWanted({ OTEL_TRACES_EXPORTER: 'console' }), true);
    assert.equal(
      tracingWanted({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }),
      false,
    );
    assert.equal(
      tracingWanted({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }),
      false,
    );
  });

  it('loads nothing and records nothing when off: no traceparent to store, no log fields', async () => {
    assert.equal(await startTracing({}), false);
    assert.equal(tracingOn(), false);
    const seen = await inSpan('imagelake.land', { attributes: { 'imagelake.image.id': 'x' } }, async () => ({
      traceparent: traceparentOf(),
      traceId: activeTraceId(),
      log: logTraceFields(),
      headers: traceHeaders(),
    }));
    assert.deepEqual(seen, { traceparent: null, traceId: null, log: {}, headers: {} });
  });

  it('takes no link from a missing or malformed traceparent', () => {
    assert.deepEqual(linkTo(null), []);
    assert.deepEqual(linkTo('not-a-traceparent'), []);
    assert.ok(contextOf(undefined));
  });

  it('throws a failing span body on, unchanged', async () => {
    const error = Object.assign(new Error('bad'), { code: 'CORRUPT_IMAGE' });
    await assert.rejects(
      inSpan('x', {}, async () => {
        throw error;
      }),
      (e) => e === error,
    );
  });
});
