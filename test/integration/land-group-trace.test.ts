import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ImageRow } from '../../src/catalog/schema.ts';
import { LandingGroup, type Recording } from '../../src/ingest/land-group.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { activeSpan, inSpan, startTracing, stopTracing } from '../../src/observability/tracing.ts';
import { createCustomer, startTestServer, type TestServer } from './harness.ts';
import { recording } from './land-recording.ts';
import { service } from './services.ts';

// With tracing on in this process (to the project's collector), so spans and contexts are real.
let otel: ReturnType<typeof service>;
let t: TestServer;
before(async () => {
  otel = service('otel');
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = otel.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  process.env.OTEL_SERVICE_NAME = 'imagelake-land-group-test';
  assert.ok(await startTracing());
  t = await startTestServer({}, ['api']);
});
after(async () => {
  await t?.stop();
  await stopTracing();
  otel?.stop();
});

describe('a group commit, traced', () => {
  it("records each landing its group hands back in that landing's own context", async () => {
    const customer = await createCustomer(t.url, 'Traced group');
    const group = new LandingGroup({
      db: t.server.db,
      maxAttempts: 3,
      retentionMs: 86_400_000,
      metrics: createMetrics(),
    });
    const contextOfAlone = new Map<string, string>();
    /** A landing in a span of its own; its span's id, and the span active when it is recorded alone. */
    const land = (name: string, r: Recording) =>
      inSpan(name, {}, async (span) => {
        await group.record(r, async () => {
          contextOfAlone.set(name, activeSpan().spanContext().spanId);
          return { id: r.row.id } as ImageRow;
        });
        return span.spanContext().spanId;
      });
    const oneImage = { images: 1, bytes: Number.POSITIVE_INFINITY };
    // The first starts the group's drain in its own span. The two after it go as a group over a
    // quota of one image, so the drain hands each back to be recorded alone.
    const [, second, third] = await Promise.all([
      land('first', recording(customer.id, 'first')),
      land('second', recording(customer.id, 'second', { quota: oneImage })),
      land('third', recording(customer.id, 'third', { quota: oneImage })),
    ]);
    assert.deepEqual(Object.fromEntries(contextOfAlone), { second, third });
  });
});
