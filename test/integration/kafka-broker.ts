import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Admin, type BaseOptions, Consumer, type Message, Producer } from '@platformatic/kafka';
import { loadConfig } from '../../src/config/config.ts';
import { connectionOptions } from '../../src/ingest/kafka/client.ts';
import { service } from './services.ts';

/** SASL and TLS for the test clients, as the platform builds them from its settings. */
export type Connection = Pick<BaseOptions, 'sasl' | 'tls'>;

/**
 * The SASL_SSL listener of the project's broker (`scripts/services/kafka env sasl-ssl`): the settings
 * imagelake reads, and the same as client options. Fails with the script's message (such as
 * "restart it") when the running broker has no such listener.
 */
export function saslSsl(): { env: Record<string, string>; bootstrap: string; connection: Connection } {
  const script = fileURLToPath(new URL('../../scripts/services/kafka', import.meta.url));
  const env = Object.fromEntries(
    execFileSync('bash', [script, 'env', 'sasl-ssl'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  ) as Record<string, string>;
  const { sasl, tls } = connectionOptions(loadConfig(env).kafka, 'test');
  return { env, bootstrap: env.IMAGELAKE_KAFKA_BROKERS!, connection: { sasl, tls } };
}

/** A real broker: the one in IMAGELAKE_KAFKA_BROKERS, or the project's own. */
export function brokers(): { bootstrap: string; stop: () => void } {
  if (process.env.IMAGELAKE_KAFKA_BROKERS)
    return { bootstrap: process.env.IMAGELAKE_KAFKA_BROKERS, stop: () => {} };
  const { env, stop } = service('kafka');
  return { bootstrap: env.IMAGELAKE_KAFKA_BROKERS!, stop };
}

export async function createTopics(
  bootstrap: string,
  topics: string[],
  partitions: number,
  connection: Connection = {},
): Promise<void> {
  const admin = new Admin({ clientId: 'imagelake-test-admin', bootstrapBrokers: [bootstrap], ...connection });
  try {
    await admin.createTopics({ topics, partitions, replicas: 1 });
  } finally {
    await admin.close();
  }
}

export type TestMessage = {
  key?: string;
  value: Buffer;
  headers?: Record<string, string>;
  partition?: number;
};

/** The topics' partition counts, or undefined for a topic that does not exist. */
export async function partitionsOf(
  bootstrap: string,
  topics: string[],
  connection: Connection = {},
): Promise<Record<string, number | undefined>> {
  const admin = new Admin({ clientId: 'imagelake-test-admin', bootstrapBrokers: [bootstrap], ...connection });
  try {
    const existing = new Set(await admin.listTopics());
    const out: Record<string, number | undefined> = {};
    for (const topic of topics) {
      out[topic] = existing.has(topic)
        ? (await admin.metadata({ topics: [topic] })).topics.get(topic)?.partitionsCount
        : undefined;
    }
    return out;
  } finally {
    await admin.close();
  }
}

export async function produce(
  bootstrap: string,
  topic: string,
  messages: TestMessage[],
  connection: Connection = {},
): Promise<void> {
  const producer = new Producer({
    clientId: 'imagelake-test-producer',
    bootstrapBrokers: [bootstrap],
    ...connection,
    acks: -1,
  });
  try {
    for (let i = 0; i < messages.length; i += 50) {
      await producer.send({
        messages: messages.slice(i, i + 50).map((m) => ({
          topic,
          key: m.key ? Buffer.from(m.key) : undefined,
          value: m.value,
          partition: m.partition,
          headers: new Map(Object.entries(m.headers ?? {}).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
        })),
      });
    }
  } finally {
    await producer.close();
  }
}

/** Reads a topic from the beginning until `enough` says so, or the time is up. */
export async function readTopic(
  bootstrap: string,
  topic: string,
  enough: (messages: Message<Buffer, Buffer, Buffer, Buffer>[]) => boolean,
  timeoutMs = 60_000,
  connection: Connection = {},
): Promise<Message<Buffer, Buffer, Buffer, Buffer>[]> {
  const consumer = new Consumer({
    clientId: 'imagelake-test-reader',
    groupId: `reader-${Math.random()}`,
    bootstrapBrokers: [bootstrap],
    ...connection,
  });
  const seen: Message<Buffer, Buffer, Buffer, Buffer>[] = [];
  try {
    const stream = await consumer.consume({
      topics: [topic],
      mode: 'earliest',
      autocommit: false,
      maxWaitTime: 200,
    });
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      stream.on('data', (message) => {
        seen.push(message);
        if (enough(seen)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    await stream.close();
  } finally {
    await consumer.close(true);
  }
  return seen;
}

export const header = (
  message: Message<Buffer, Buffer, Buffer, Buffer>,
  name: string,
): string | undefined => {
  for (const [k, v] of message.headers) if (k.toString() === name) return v.toString();
  return undefined;
};
