import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, settled, spawnServer, until, upload } from './harness.ts';
import { brokers, createTopics, produce } from './kafka-broker.ts';
import { service } from './services.ts';
import { one, roots, spansOf, traceWith, type WrittenSpan } from './traces.ts';
import { Receiver } from './webhook-receiver.ts';

// The platform as a user runs it with tracing on (bin/imagelake.js, OTEL_* settings), sending to
// the project's collector (scripts/services/otel), whose file this test reads.
const run = randomUUID().slice(0, 8);
const TOPIC = `traced-${run}`;
const EVENTS = `traced-events-${run}`;
const SERVICE = `imagelake-test-${run}`;
const PROCESSOR_SERVICE = `traced-processor-${run}`;
const root = fileURLToPath(new URL('../..', import.meta.url));
const python = execFileSync('bash', [join(root, 'scripts/services/python'), 'path'], {
  encoding: 'utf8',
}).trim();
const STEPS = ['probe', 'limits', 'decode', 'metadata', 'renditions', 'fingerprints'].map(
  (s) => `imagelake.step ${s}`,
);
// What every processed image's trace holds, from landing to the published event.
const PROCESSED = [
  'imagelake.land',
  'imagelake.job process-image',
  'imagelake.claim',
  'imagelake.pipeline',
  ...STEPS,
  'imagelake.processor traced',
  'imagelake.process traced',
  'traced work',
  'imagelake.write-outputs',
  'imagelake.outcome',
  'imagelake.event publish',
];

let server: Awaited<ReturnType<typeof spawnServer>>;
let dir: string;
let tracesFile: string;
let bootstrap: string;
let customer: { id: string; apiKey: string };
// The customer's webhook receivers for image.processed: one takes every delivery, one refuses them.
const receiver = new Receiver();
const refusing = new Receiver();
let hookSecret: string;

before(async () => {
  const otel = service('otel');
  tracesFile = otel.env.IMAGELAKE_OTEL_TRACES_FILE!;
  ({ bootstrap } = brokers());
  await createTopics(bootstrap, [TOPIC, EVENTS], 1);
  dir = await mkdtemp(join(tmpdir(), 'imagelake-tracing-'));
  await writeFile(
    join(dir, 'processors.json'),
    JSON.stringify({
      processors: [
        {
          name: 'traced',
          command: [python, join(root, 'test/fixtures/processors/traced.py')],
          env: { OTEL_SERVICE_NAME: PROCESSOR_SERVICE },
          timeout: '30s',
        },
      ],
    }),
  );
  server = await spawnServer({
    IMAGELAKE_DATA_DIR: join(dir, 'data'),
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_PROCESSORS_FILE: join(dir, 'processors.json'),
    IMAGELAKE_POLL_INTERVAL: '200ms',
    IMAGELAKE_JOB_ATTEMPTS: '1',
    IMAGELAKE_LOG_LEVEL: 'debug',
    IMAGELAKE_KAFKA_BROKERS: bootstrap,
    IMAGELAKE_KAFKA_TOPICS: TOPIC,
    IMAGELAKE_KAFKA_GROUP: `imagelake-${run}`,
    IMAGELAKE_KAFKA_EVENTS_TOPIC: EVENTS,
    OTEL_EXPORTER_OTLP_ENDPOINT: otel.env.OTEL_EXPORTER_OTLP_ENDPOINT!,
    OTEL_SERVICE_NAME: SERVICE,
    OTEL_BSP_SCHEDULE_DELAY: '200',
    IMAGELAKE_WEBHOOK_ALLOW_HTTP: 'true',
    IMAGELAKE_WEBHOOK_ALLOW_PRIVATE: 'true',
  });
  customer = await createCustomer(server.url, 'Traced');
  await receiver.start();
  await refusing.start();
  refusing.answer = (_, response) => {
    response.statusCode = 400;
    response.end('no');
  };
  hookSecret = (await registerWebhook(receiver.url)).secret;
  await registerWebhook(refusing.url);
});

async function registerWebhook(
  url: string,
  events = ['image.processed'],
): Promise<{ id: string; secret: string }> {
  const { status, body } = await api(server.url, customer.apiKey, 'POST', '/v1/webhooks', {
    url,
    events,
  });
  assert.equal(status, 201, JSON.stringify(body));
  return body;
}

after(async () => {
  if (server && server.child.exitCode === null) {
    const exited = new Promise((r) => server.child.once('exit', r));
    server.child.kill('SIGTERM');
    await exited;
  }
  await receiver.stop();
  await refusing.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The admin's view of an image names its trace; the customer's does not. */
async function traceIdOf(imageId: string): Promise<string> {
  const admin = await api(server.url, ADMIN, 'GET', `/v1/images/${imageId}`);
  assert.match(admin.body.traceId, /^[0-9a-f]{32}$/);
  const own = await api(server.url, customer.apiKey, 'GET', `/v1/images/${imageId}`);
  assert.equal(own.body.traceId, undefined);
  return admin.body.traceId;
}

function parentOf(spans: WrittenSpan[], span: WrittenSpan): WrittenSpan | undefined {
  return spans.find((s) => s.spanId === span.parentSpanId);
}

/** The chain every image's trace has: landing -> job across the queue -> pipeline and processor -> outcome -> event. */
function assertImageTrace(spans: WrittenSpan[], imageId: string): void {
  const land = one(spans, 'imagelake.land');
  assert.equal(land.attributes['imagelake.image.id'], imageId);
  assert.equal(land.attributes['imagelake.customer.id'], customer.id);
  assert.equal(typeof land.attributes['imagelake.image.bytes'], 'number');
  const job = one(spans, 'imagelake.job process-image');
  assert.equal(job.parentSpanId, land.spanId, 'the job continues the landing across the queue');
  assert.deepEqual(
    job.links.map((l) => l.spanId),
    [land.spanId],
  );
  assert.equal(typeof job.attributes['imagelake.queue.wait_ms'], 'number');
  assert.equal(job.attributes['imagelake.image.format'], 'jpeg');
  assert.equal(parentOf(spans, one(spans, 'imagelake.claim'))?.name, job.name);
  const pipeline = one(spans, 'imagelake.pipeline');
  for (const step of STEPS) assert.equal(one(spans, step).parentSpanId, pipeline.spanId, step);
  const processor = one(spans, 'imagelake.processor traced');
  assert.equal(processor.parentSpanId, job.spanId);
  const own = one(spans, 'imagelake.process traced');
  assert.equal(own.service, PROCESSOR_SERVICE, "the processor's own span, sent by the Python process");
  assert.equal(own.parentSpanId, processor.spanId, 'continues the traceparent of the command frame');
  assert.equal(one(spans, 'traced work').parentSpanId, own.spanId);
  const outcome = one(spans, 'imagelake.outcome');
  assert.equal(outcome.attributes['imagelake.outcome'], 'processed');
  assert.equal(one(spans, 'imagelake.event publish').parentSpanId, outcome.spanId);
}

/**
 * The image.processed deliveries' attempts are in the image's trace, children of the outcome that
 * wrote them: the delivered one, and the refused one failed with the receiver's status. The
 * receiver got the trace's traceparent, and the signature still verifies.
 */
async function assertWebhookSpans(imageId: string, traceId: string): Promise<void> {
  // The two attempts end apart, and may reach the collector in different batches.
  const spans = await until('both webhook attempts in the trace', async () => {
    const all = await spansOf(tracesFile, traceId);
    return all.filter((s) => s.name === 'imagelake.webhook deliver').length >= 2 && all;
  });
  const outcome = one(spans, 'imagelake.outcome');
  const attempts = spans.filter((s) => s.name === 'imagelake.webhook deliver');
  assert.equal(attempts.length, 2, 'one attempt per endpoint');
  const CLIENT = 3;
  const ERROR = 2;
  for (const attempt of attempts) {
    assert.equal(attempt.parentSpanId, outcome.spanId, 'continues the context stored with the delivery');
    assert.equal(attempt.kind, CLIENT);
    assert.equal(attempt.attributes['imagelake.image.id'], imageId);
    assert.equal(attempt.attributes['imagelake.customer.id'], customer.id);
    assert.equal(attempt.attributes['imagelake.event.type'], 'image.processed');
    assert.equal(attempt.attributes['imagelake.webhook.attempt'], 1);
    assert.match(String(attempt.attributes['imagelake.webhook.endpoint.id']), /^[0-9a-f-]{36}$/);
  }
  const delivered = attempts.find((s) => s.attributes['imagelake.webhook.outcome'] === 'delivered');
  assert.ok(delivered, JSON.stringify(attempts.map((s) => s.attributes)));
  assert.equal(delivered.attributes['http.response.status_code'], 200);
  assert.notEqual(delivered.status.code, ERROR);
  const refused = attempts.find((s) => s !== delivered)!;
  assert.equal(refused.attributes['imagelake.webhook.outcome'], 'failed');
  assert.equal(refused.attributes['http.response.status_code'], 400);
  assert.equal(refused.attributes['error.type'], '400');
  assert.equal(refused.status.code, ERROR);
  assert.equal(refused.status.message, 'HTTP 400');

  const message = receiver.of('image.processed').find((r) => JSON.parse(r.body).data.id === imageId);
  assert.ok(message, 'the receiver got the event');
  const traceparent = String(message.headers.traceparent);
  assert.match(traceparent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  assert.ok(
    spans.some((s) => s.spanId === traceparent.split('-')[2]),
    'the receiver continues a span of the trace',
  );
  const verified = new Webhook(hookSecret).verify(message.body, message.headers as Record<string, string>);
  assert.equal((verified as { type: string }).type, 'image.processed', 'the signature still verifies');
}

describe('tracing: one trace per image, to a real OpenTelemetry Collector', () => {
  it('follows an HTTP upload from the request to the published event, with the processor in it', async () => {
    const landed = await upload(server.url, customer.apiKey, await jpeg({ width: 64, height: 48, seed: 1 }));
    assert.equal(landed.status, 202);
    const image = await settled(server.url, customer.apiKey, landed.body.id);
    assert.equal(image.status, 'processed', JSON.stringify(image.error));
    const traceId = await traceIdOf(landed.body.id);
    const spans = await traceWith(tracesFile, traceId, [
      'POST /v1/images',
      ...PROCESSED,
      'imagelake.webhook deliver',
    ]);
    assertImageTrace(spans, landed.body.id);
    assert.deepEqual(
      roots(spans).map((s) => s.name),
      ['POST /v1/images'],
      'one connected trace, rooted at the request',
    );
    assert.ok(
      spans.some((s) => s.name.startsWith('pg.query') && s.service === SERVICE),
      'the catalog queries are in it',
    );
    await assertWebhookSpans(landed.body.id, traceId);
    // Log lines written inside the trace name it.
    await until('a log line with the trace id', async () =>
      server.output().includes(`"trace_id":"${traceId}"`),
    );
  });

  it('continues the traceparent of a Kafka message, to its image.received webhook', async () => {
    // Kafka's landings share a catalog transaction: the delivery must still keep its own landing's context.
    await registerWebhook(receiver.url, ['image.received']);
    const traceId = randomBytes(16).toString('hex');
    const parent = randomBytes(8).toString('hex');
    await produce(bootstrap, TOPIC, [
      {
        value: await jpeg({ width: 70, height: 50, seed: 2 }),
        headers: {
          'customer-id': customer.id,
          'message-id': `m-${run}`,
          traceparent: `00-${traceId}-${parent}-01`,
        },
      },
    ]);
    const spans = await traceWith(tracesFile, traceId, [`imagelake.kafka receive ${TOPIC}`, ...PROCESSED]);
    const receive = one(spans, `imagelake.kafka receive ${TOPIC}`);
    assert.equal(receive.parentSpanId, parent, "a child of the producer's span");
    assert.deepEqual(
      roots(spans).map((s) => s.spanId),
      [receive.spanId],
    );
    const land = one(spans, 'imagelake.land');
    assert.equal(land.parentSpanId, receive.spanId);
    assert.equal(land.attributes['imagelake.image.source'], 'kafka');
    assertImageTrace(spans, String(land.attributes['imagelake.image.id']));
    assert.equal(await traceIdOf(String(land.attributes['imagelake.image.id'])), traceId);
    const received = await until('the image.received attempt in the trace', async () =>
      (await spansOf(tracesFile, traceId)).find(
        (s) =>
          s.name === 'imagelake.webhook deliver' && s.attributes['imagelake.event.type'] === 'image.received',
      ),
    );
    assert.equal(received.parentSpanId, land.spanId, 'a child of the landing that wrote it');
    assert.equal(received.attributes['imagelake.image.id'], land.attributes['imagelake.image.id']);
  });

  it("puts a failed image's error code on its trace", async () => {
    const whole = await jpeg({ width: 300, height: 200, seed: 3 });
    const landed = await upload(server.url, customer.apiKey, whole.subarray(0, Math.floor(whole.length / 2)));
    const image = await settled(server.url, customer.apiKey, landed.body.id);
    assert.equal(image.status, 'failed');
    assert.equal(image.error.code, 'CORRUPT_IMAGE');
    const traceId = await traceIdOf(landed.body.id);
    const spans = await traceWith(tracesFile, traceId, [
      'imagelake.job process-image',
      'imagelake.pipeline',
      'imagelake.outcome',
      'imagelake.event publish',
    ]);
    const ERROR = 2;
    const job = one(spans, 'imagelake.job process-image');
    assert.equal(job.attributes['imagelake.error.code'], 'CORRUPT_IMAGE');
    assert.equal(job.status.code, ERROR);
    assert.equal(one(spans, 'imagelake.pipeline').attributes['error.type'], 'CORRUPT_IMAGE');
    const failedStep = spans.filter((s) => s.name.startsWith('imagelake.step') && s.status.code === ERROR);
    assert.equal(failedStep.length, 1, 'the step that failed, and only it');
    assert.equal(failedStep[0]!.attributes['imagelake.error.code'], 'CORRUPT_IMAGE');
    const outcome = one(spans, 'imagelake.outcome');
    assert.equal(outcome.attributes['imagelake.outcome'], 'failed');
    assert.equal(outcome.attributes['imagelake.error.code'], 'CORRUPT_IMAGE');
    assert.equal(spans.filter((s) => s.name === 'imagelake.processor traced').length, 0);
  });
});
