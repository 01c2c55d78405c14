import { Admin, Consumer, type Message, Producer } from '@platformatic/kafka';
import { service } from './services.ts';

/** A real broker: the one in IMAGELAKE_KAFKA_BROKERS, or the project's own. */
export function brokers(): { bootstrap: string; stop: () => void } {
  if (process.env.IMAGELAKE_KAFKA_BROKERS)
    return { bootstrap: process.env.IMAGELAKE_KAFKA_BROKERS, stop: () => {} };
  const { env, stop } = service('kafka');
  return { bootstrap: env.IMAGELAKE_KAFKA_BROKERS!, stop };
}

export async function createTopics(bootstrap: string, topics: string[], partitions: number): Promise<void> {
  const admin = new Admin({ clientId: 'imagelake-test-admin', bootstrapBrokers: [bootstrap] });
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

export async function produce(bootstrap: string, topic: string, messages: TestMessage[]): Promise<void> {
  const producer = new Producer({
    clientId: 'imagelake-test-producer',
    bootstrapBrokers: [bootstrap],
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
): Promise<Message<Buffer, Buffer, Buffer, Buffer>[]> {
  const consumer = new Consumer({
    clientId: 'imagelake-test-reader',
    groupId: `reader-${Math.random()}`,
    bootstrapBrokers: [bootstrap],
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
