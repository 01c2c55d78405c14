import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jpeg } from '../fixtures/images.ts';
import { createCustomer, until } from './harness.ts';
import { brokers, createTopics, partitionsOf, produce, readTopic } from './kafka-broker.ts';
import { kafkaWarnings, processedKafkaImages, serveKafka } from './kafka-server.ts';

// The path of the README: a broker with no topics, imagelake started on it with its defaults.
const run = randomUUID().slice(0, 8);
let bootstrap: string;
let stopBroker: () => void;

async function images(customerId: string, n: number, seed: number) {
  const out = [];
  for (let i = 0; i < n; i++)
    out.push({
      value: await jpeg({ width: 40, height: 30, seed: seed + i }),
      headers: { 'customer-id': customerId, 'message-id': `${seed}-${i}` },
    });
  return out;
}

before(() => {
  ({ bootstrap, stop: stopBroker } = brokers());
});
after(() => stopBroker?.());

describe('Kafka topics on a broker that has none yet', () => {
  it('creates its image, dead-letter and events topics on a local broker, then lands and announces images', async () => {
    const topic = `fresh-${run}`;
    const events = `fresh-events-${run}`;
    assert.deepEqual(await partitionsOf(bootstrap, [topic, events]), {
      [topic]: undefined,
      [events]: undefined,
    });
    // No IMAGELAKE_KAFKA_CREATE_TOPICS: on by default, as the broker is on this machine.
    const s = await serveKafka(bootstrap, {
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: events,
    });
    try {
      assert.deepEqual(await partitionsOf(bootstrap, [topic, `${topic}.dlq`]), {
        [topic]: 3,
        [`${topic}.dlq`]: 3,
      });
      const ready = await until('ready', async () => {
        const r = await s.readyz();
        return r.status === 200 && r.body.checks.events === 'ok' ? r : undefined;
      });
      assert.equal(ready.body.checks.kafka, 'ok');
      const customer = await createCustomer(s.url, 'Fresh');
      await produce(bootstrap, topic, await images(customer.id, 3, 100));
      await until('3 processed', async () => (await processedKafkaImages(s.server.db)) === 3, 60_000);
      const announced = await readTopic(bootstrap, events, (seen) => seen.length >= 3);
      assert.deepEqual(
        announced.map((m) => JSON.parse(m.value.toString()).type),
        ['image.processed', 'image.processed', 'image.processed'],
      );
      assert.equal((await partitionsOf(bootstrap, [events]))[events], 3);
      assert.deepEqual(kafkaWarnings(s.lines), [], 'no warnings on the documented path');
    } finally {
      await s.stop();
    }
  });

  it('several kafka processes starting at once on a fresh broker all create the same topics and become ready', async () => {
    const topic = `raced-${run}`;
    const env = {
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: `raced-events-${run}`,
      IMAGELAKE_KAFKA_GROUP: `raced-${run}`,
    };
    const servers = await Promise.all([serveKafka(bootstrap, env), serveKafka(bootstrap, env)]);
    try {
      for (const s of servers) {
        await until('ready', async () => (await s.readyz()).status === 200);
        assert.deepEqual(kafkaWarnings(s.lines), []);
      }
      assert.deepEqual(await partitionsOf(bootstrap, [topic, `${topic}.dlq`]), {
        [topic]: 3,
        [`${topic}.dlq`]: 3,
      });
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });

  it('without topic creation, a missing image topic leaves the process up and unready, naming the topic and the command; it consumes once the topic exists', async () => {
    const topic = `absent-${run}`;
    const s = await serveKafka(bootstrap, {
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
      IMAGELAKE_KAFKA_CREATE_TOPICS: 'false',
    });
    try {
      const unready = await s.readyz();
      assert.equal(unready.status, 503);
      assert.equal(unready.body.error.code, 'NOT_READY');
      assert.match(unready.body.error.message, new RegExp(`Kafka topic "${topic}" missing at ${bootstrap}`));
      assert.match(
        unready.body.error.message,
        new RegExp(
          `kafka-topics.sh --bootstrap-server ${bootstrap} --create --topic ${topic} --partitions 3`,
        ),
      );
      assert.match(unready.body.error.message, /IMAGELAKE_KAFKA_CREATE_TOPICS=true/);
      assert.match(await s.metrics(), /imagelake_kafka_problem\{part="ingest",reason="topic_missing"\} 1/);
      const warnings = kafkaWarnings(s.lines);
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]!.err, undefined, 'a reason, not a stack trace');

      // Dead-letter topics are imagelake's own: made whatever the setting.
      assert.equal((await partitionsOf(bootstrap, [`${topic}.dlq`]))[`${topic}.dlq`], 3);
      // The operator creates the topic as told; the running process picks it up.
      await createTopics(bootstrap, [topic], 1);
      const customer = await createCustomer(s.url, 'Patient');
      await produce(bootstrap, topic, await images(customer.id, 2, 200));
      await until('2 processed', async () => (await processedKafkaImages(s.server.db)) === 2, 90_000);
      const ready = await until('ready', async () => {
        const r = await s.readyz();
        return r.status === 200 ? r : undefined;
      });
      assert.equal(ready.body.checks.kafka, 'ok');
      assert.match(await s.metrics(), /imagelake_kafka_problem\{part="ingest",reason="topic_missing"\} 0/);
    } finally {
      await s.stop();
    }
  });

  it('a missing events topic is one warning and a metric; the events wait in the outbox and go out once it exists', async () => {
    const topic = `announced-${run}`;
    const events = `late-events-${run}`;
    await createTopics(bootstrap, [topic, `${topic}.dlq`], 1);
    const s = await serveKafka(bootstrap, {
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: events,
      IMAGELAKE_KAFKA_CREATE_TOPICS: 'false',
    });
    try {
      const customer = await createCustomer(s.url, 'Announced');
      await produce(bootstrap, topic, await images(customer.id, 3, 300));
      await until('3 processed', async () => (await processedKafkaImages(s.server.db)) === 3, 60_000);
      await until('3 events waiting', async () => /^imagelake_events_outbox 3$/m.test(await s.metrics()));
      // Publishing is tried again with backoff; each try after the first is logged at debug only.
      const retries = () => s.lines.filter((l) => l.part === 'events' && l.level === 20).length;
      await until('publishing retried', async () => retries() >= 2, 30_000);
      const warnings = kafkaWarnings(s.lines);
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.equal(warnings[0]!.err, undefined, 'a reason, not a stack trace');
      assert.match(warnings[0]!.msg, new RegExp(`"${events}" missing`));
      assert.match(warnings[0]!.msg, /IMAGELAKE_KAFKA_EVENTS_TOPIC= \(empty\)/);
      assert.match(await s.metrics(), /imagelake_kafka_problem\{part="events",reason="topic_missing"\} 1/);
      // Images still land, so the process stays ready and says what is wrong with events.
      const ready = await s.readyz();
      assert.equal(ready.status, 200);
      assert.match(ready.body.checks.events, new RegExp(`"${events}" missing`));

      await createTopics(bootstrap, [events], 1);
      const announced = await readTopic(bootstrap, events, (seen) => seen.length >= 3);
      assert.equal(new Set(announced.map((m) => m.key.toString())).size, 3);
      await until('outbox drained', async () => /^imagelake_events_outbox 0$/m.test(await s.metrics()));
      assert.match(await s.metrics(), /imagelake_kafka_problem\{part="events",reason="topic_missing"\} 0/);
      assert.equal((await s.readyz()).body.checks.events, 'ok');
    } finally {
      await s.stop();
    }
  });

  it('imagelake kafka produce into a missing topic exits 1, naming the topic and how to make it', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'imagelake-produce-'));
    try {
      await writeFile(join(folder, 'a.jpg'), await jpeg({ width: 30, height: 20, seed: 400 }));
      const topic = `nowhere-${run}`;
      const { IMAGELAKE_LAKE_URL: _lake, ...env } = process.env;
      const bin = new URL('../../bin/imagelake.js', import.meta.url).pathname;
      const result = spawnSync(
        process.execPath,
        [bin, 'kafka', 'produce', '--quiet', '--customer', randomUUID(), '--topic', topic, folder],
        { env: { ...env, IMAGELAKE_DATA_DIR: folder, IMAGELAKE_KAFKA_BROKERS: bootstrap }, encoding: 'utf8' },
      );
      assert.equal(result.status, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`Kafka topic "${topic}" does not exist at ${bootstrap}`));
      assert.match(result.stderr, new RegExp(`--create --topic ${topic} --partitions 3`));
      assert.match(result.stderr, /0 of 1 files were sent/);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
