import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { loadConfig } from '../../src/config/config.ts';
import { connectionOptions } from '../../src/ingest/kafka/client.ts';
import { jpeg } from '../fixtures/images.ts';
import { createCustomer, until } from './harness.ts';
import { brokers, type Connection, header, produce, readTopic, saslSsl } from './kafka-broker.ts';
import { kafkaWarnings, processedKafkaImages, serveKafka } from './kafka-server.ts';

// The broker's SASL_SSL listener, as managed Kafka (Confluent Cloud, MSK, Aiven) is reached: SCRAM
// over TLS with a private CA. Every client here, the platform's and the test's, goes through it.
const run = randomUUID().slice(0, 8);
let stopBroker: () => void;
let bootstrap: string;
let env: Record<string, string>;
let connection: Connection;

before(() => {
  ({ stop: stopBroker } = brokers());
  ({ bootstrap, env, connection } = saslSsl());
});
after(() => stopBroker?.());

describe('Kafka over SASL_SSL', () => {
  it('lands images, dead-letters what cannot land and publishes events, all over SCRAM and TLS', async () => {
    const topic = `secure-${run}`;
    const events = `secure-events-${run}`;
    assert.match(env.IMAGELAKE_KAFKA_SASL_MECHANISM!, /^SCRAM-SHA-256$/);
    const s = await serveKafka(bootstrap, {
      ...env,
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: events,
    });
    try {
      const ready = await s.readyz();
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      const customer = await createCustomer(s.url, 'Secure');
      await produce(
        bootstrap,
        topic,
        [
          {
            value: await jpeg({ width: 40, height: 30, seed: 1 }),
            headers: { 'customer-id': customer.id, 'message-id': 's-1' },
          },
          {
            value: await jpeg({ width: 40, height: 30, seed: 2 }),
            headers: { 'customer-id': customer.id, 'message-id': 's-2' },
          },
          { value: await jpeg({ width: 40, height: 30, seed: 3 }), headers: { 'message-id': 's-nobody' } },
        ],
        connection,
      );
      await until('2 processed', async () => (await processedKafkaImages(s.server.db)) === 2, 60_000);
      const dead = await readTopic(bootstrap, `${topic}.dlq`, (seen) => seen.length >= 1, 60_000, connection);
      assert.equal(dead.length, 1);
      assert.equal(header(dead[0]!, 'error-code'), 'MISSING_CUSTOMER');
      assert.equal(header(dead[0]!, 'message-id'), 's-nobody');
      const announced = await readTopic(bootstrap, events, (seen) => seen.length >= 2, 60_000, connection);
      assert.deepEqual(
        announced.map((m) => JSON.parse(m.value.toString())).map((e) => [e.type, e.customerId]),
        [
          ['image.processed', customer.id],
          ['image.processed', customer.id],
        ],
      );
      assert.deepEqual(kafkaWarnings(s.lines), []);
    } finally {
      await s.stop();
    }
  });

  it('logs in with each mechanism the settings accept: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512', async () => {
    for (const mechanism of ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) {
      const config = loadConfig({ ...env, IMAGELAKE_KAFKA_SASL_MECHANISM: mechanism }).kafka;
      const admin = new Admin(connectionOptions(config, 'test'));
      try {
        assert.ok(Array.isArray(await admin.listTopics()), mechanism);
      } finally {
        await admin.close();
      }
    }
  });

  it('a wrong password leaves the process up and unready, saying which login was refused, with one warning', async () => {
    const s = await serveKafka(bootstrap, {
      ...env,
      IMAGELAKE_KAFKA_SASL_PASSWORD: 'not-the-password',
      IMAGELAKE_KAFKA_TOPICS: `refused-${run}`,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
    });
    try {
      const unready = await s.readyz();
      assert.equal(unready.status, 503);
      assert.equal(unready.body.error.code, 'NOT_READY');
      assert.match(
        unready.body.error.message,
        new RegExp(`Kafka at ${bootstrap} refused the SCRAM-SHA-256 login of user "imagelake"`),
      );
      assert.match(unready.body.error.message, /IMAGELAKE_KAFKA_SASL_PASSWORD/);
      assert.doesNotMatch(unready.body.error.message, /not-the-password/, 'the password is never shown');
      assert.match(await s.metrics(), /imagelake_kafka_problem\{part="ingest",reason="authentication"\} 1/);
      // It keeps trying (logged at debug) without repeating the warning or exiting.
      await until('a retry', async () => s.lines.some((l) => l.part === 'ingest' && l.level === 20), 30_000);
      assert.equal(kafkaWarnings(s.lines).length, 1);
      assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    } finally {
      await s.stop();
    }
  });

  it('a broker certificate from a CA the process does not trust leaves it unready, saying to set the CA', async () => {
    const { IMAGELAKE_KAFKA_TLS_CA: _ca, ...withoutCa } = env;
    const s = await serveKafka(bootstrap, {
      ...withoutCa,
      IMAGELAKE_KAFKA_TLS: 'true',
      IMAGELAKE_KAFKA_TOPICS: `untrusted-${run}`,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
    });
    try {
      const unready = await s.readyz();
      assert.equal(unready.status, 503);
      assert.match(
        unready.body.error.message,
        new RegExp(
          `The TLS certificate of Kafka at ${bootstrap} is not trusted \\(self-signed certificate in certificate chain\\)`,
        ),
      );
      assert.match(
        unready.body.error.message,
        /set IMAGELAKE_KAFKA_TLS_CA to the file of the CA that signed it/,
      );
      assert.match(await s.metrics(), /imagelake_kafka_problem\{part="ingest",reason="tls"\} 1/);
      assert.equal(kafkaWarnings(s.lines).length, 1);
    } finally {
      await s.stop();
    }
  });
});
