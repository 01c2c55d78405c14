import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AuthenticationError,
  MultipleErrors,
  NetworkError,
  ProtocolError,
  UserError,
} from '@platformatic/kafka';
import { type ConfigError, loadConfig } from '../../src/config/config.ts';
import { creationRefused, explain } from '../../src/ingest/kafka/problems.ts';
import { missingTopicsError } from '../../src/ingest/kafka/topics.ts';

const kafka = (env: Record<string, string>) => loadConfig(env).kafka;

/** Nested as @platformatic/kafka nests them when no broker can be used. */
const cannotConnect = (cause: Error) =>
  new MultipleErrors('metadata failed 6 times.', [
    new MultipleErrors('Cannot connect to any broker.', [
      new NetworkError('Connection to 127.0.0.1:19094 failed.', { cause }),
    ]),
  ]);

const tlsError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('Kafka topic creation settings', () => {
  it('creates topics by default only when every broker is on this machine', () => {
    assert.equal(kafka({ IMAGELAKE_KAFKA_BROKERS: '127.0.0.1:19092' }).createTopics, true);
    assert.equal(kafka({ IMAGELAKE_KAFKA_BROKERS: 'localhost:9092,[::1]:9092' }).createTopics, true);
    assert.equal(kafka({ IMAGELAKE_KAFKA_BROKERS: 'kafka:9092' }).createTopics, false);
    assert.equal(kafka({ IMAGELAKE_KAFKA_BROKERS: '127.0.0.1:9092,kafka-2:9092' }).createTopics, false);
    assert.equal(
      kafka({ IMAGELAKE_KAFKA_BROKERS: 'kafka:9092', IMAGELAKE_KAFKA_CREATE_TOPICS: 'true' }).createTopics,
      true,
    );
    assert.equal(
      kafka({ IMAGELAKE_KAFKA_BROKERS: '127.0.0.1:19092', IMAGELAKE_KAFKA_CREATE_TOPICS: 'false' })
        .createTopics,
      false,
    );
  });

  it('reads partitions and replication, and refuses what is not a number', () => {
    const defaults = kafka({ IMAGELAKE_KAFKA_BROKERS: 'kafka:9092' });
    assert.deepEqual([defaults.topicPartitions, defaults.topicReplicas], [3, -1]);
    const set = kafka({ IMAGELAKE_KAFKA_TOPIC_PARTITIONS: '12', IMAGELAKE_KAFKA_TOPIC_REPLICATION: '3' });
    assert.deepEqual([set.topicPartitions, set.topicReplicas], [12, 3]);
    assert.throws(
      () =>
        loadConfig({
          IMAGELAKE_KAFKA_CREATE_TOPICS: 'maybe',
          IMAGELAKE_KAFKA_TOPIC_PARTITIONS: '0',
          IMAGELAKE_KAFKA_TOPIC_REPLICATION: 'all',
        }),
      (error: ConfigError) =>
        error.problems.some((p) => p.startsWith('IMAGELAKE_KAFKA_CREATE_TOPICS="maybe"')) &&
        error.problems.some((p) => p.startsWith('IMAGELAKE_KAFKA_TOPIC_PARTITIONS="0"')) &&
        error.problems.some((p) => p.startsWith('IMAGELAKE_KAFKA_TOPIC_REPLICATION="all"')),
    );
  });
});

describe('Kafka problems said as what to change', () => {
  const secure = kafka({
    IMAGELAKE_KAFKA_BROKERS: '127.0.0.1:19094',
    IMAGELAKE_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
    IMAGELAKE_KAFKA_SASL_USERNAME: 'ingest',
    IMAGELAKE_KAFKA_SASL_PASSWORD: 'hunter2',
    IMAGELAKE_KAFKA_TLS_CA: '/etc/kafka/ca.pem',
  });

  it('a refused login names the mechanism and user, never the password', () => {
    const problem = explain(cannotConnect(new AuthenticationError('SASL authentication failed.')), secure);
    assert.equal(problem.reason, 'authentication');
    assert.match(problem.message, /refused the SCRAM-SHA-512 login of user "ingest"/);
    assert.doesNotMatch(problem.message, /hunter2/);
  });

  it('an untrusted certificate says which CA setting to change', () => {
    const problem = explain(
      cannotConnect(tlsError('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain')),
      secure,
    );
    assert.equal(problem.reason, 'tls');
    assert.match(problem.message, /not trusted \(self-signed certificate in certificate chain\)/);
    assert.match(problem.message, /IMAGELAKE_KAFKA_TLS_CA .* \(now \/etc\/kafka\/ca.pem\)/);
  });

  it('an unreachable broker suggests TLS only when it is off', () => {
    const refused = tlsError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:19094');
    const plain = kafka({ IMAGELAKE_KAFKA_BROKERS: '127.0.0.1:19094' });
    assert.equal(explain(cannotConnect(refused), plain).reason, 'unreachable');
    assert.match(explain(cannotConnect(refused), plain).message, /IMAGELAKE_KAFKA_TLS=true/);
    assert.doesNotMatch(explain(cannotConnect(refused), secure).message, /IMAGELAKE_KAFKA_TLS=true/);
  });

  it('tells a creation refused to this user from one that may yet have gone through', () => {
    // Nested as the client nests a response's errors: topics.ts waits for the second kind to show.
    const answer = (id: string) => new MultipleErrors('Creating topics failed.', [new ProtocolError(id)]);
    assert.equal(creationRefused(answer('TOPIC_AUTHORIZATION_FAILED')), true);
    assert.equal(creationRefused(answer('CLUSTER_AUTHORIZATION_FAILED')), true);
    assert.equal(creationRefused(answer('INVALID_REPLICATION_FACTOR')), true);
    assert.equal(creationRefused(answer('REQUEST_TIMED_OUT')), false);
    assert.equal(creationRefused(answer('TOPIC_ALREADY_EXISTS')), false);
    assert.equal(creationRefused(cannotConnect(new Error('ECONNREFUSED'))), false);
  });

  it('an unknown topic is a missing topic; anything else keeps its innermost message', () => {
    assert.equal(explain(new UserError('Unknown topic images.'), secure).reason, 'topic_missing');
    const other = explain(cannotConnect(new Error('socket hang up')), secure);
    assert.deepEqual(other, { reason: 'other', message: 'Kafka at 127.0.0.1:19094: socket hang up' });
  });

  it('missing topics come with the command that creates them, and the setting that would', () => {
    const config = kafka({ IMAGELAKE_KAFKA_BROKERS: 'kafka:9092', IMAGELAKE_KAFKA_TOPIC_PARTITIONS: '6' });
    const { message } = missingTopicsError(config, ['images', 'imagelake.events']).problem;
    assert.match(message, /^Kafka topics "images", "imagelake.events" missing at kafka:9092/);
    assert.match(
      message,
      /kafka-topics.sh --bootstrap-server kafka:9092 --create --topic images --partitions 6/,
    );
    assert.match(message, /IMAGELAKE_KAFKA_CREATE_TOPICS=true/);
    assert.match(message, /IMAGELAKE_KAFKA_EVENTS_TOPIC= \(empty\)/);
  });
});
