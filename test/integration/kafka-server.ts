import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config/config.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { ADMIN, startTestServer, type TestServer } from './harness.ts';
import { brokers, createTopics } from './kafka-broker.ts';

export type Line = { level: number; msg: string; part?: string; err?: unknown };

/** Warnings about Kafka, not the embedded PostgreSQL's about running as root on a test machine. */
export const kafkaWarnings = (lines: Line[]) =>
  lines.filter((l) => l.level >= 40 && (l.part !== undefined || /kafka|topic|event/i.test(l.msg)));

/** A server with api, worker and kafka roles whose log lines the test reads. */
export async function serveKafka(bootstrap: string, env: Record<string, string>) {
  const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-topics-'));
  const lines: Line[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const server = await startServer(
    loadConfig({
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_PORT: '0',
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      IMAGELAKE_POLL_INTERVAL: '200ms',
      IMAGELAKE_KAFKA_BROKERS: bootstrap,
      IMAGELAKE_KAFKA_GROUP: `imagelake-${randomUUID().slice(0, 8)}`,
      ...env,
    }),
    { log },
  );
  const url = server.url!;
  return {
    url,
    server,
    lines,
    readyz: async () => {
      const res = await fetch(`${url}/readyz`);
      return { status: res.status, body: (await res.json()) as any };
    },
    metrics: async () => (await fetch(`${url}/metrics`)).text(),
    stop: async () => {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function processedKafkaImages(db: RunningServer['db']): Promise<number> {
  const row = await db
    .selectFrom('images')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('source', '=', 'kafka')
    .where('status', '=', 'processed')
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** A server with the api and kafka roles consuming a topic of one partition made for it. */
export async function topicServer(
  prefix: string,
  env: Record<string, string> = {},
): Promise<{ t: TestServer; bootstrap: string; topic: string; stop: () => Promise<void> }> {
  const run = randomUUID().slice(0, 8);
  const topic = `${prefix}-${run}`;
  const { bootstrap, stop: stopBroker } = brokers();
  await createTopics(bootstrap, [topic], 1);
  const t = await startTestServer(
    {
      IMAGELAKE_KAFKA_BROKERS: bootstrap,
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_GROUP: `imagelake-${run}`,
      ...env,
    },
    ['api', 'kafka'],
  );
  return {
    t,
    bootstrap,
    topic,
    stop: async () => {
      await t.stop();
      stopBroker();
    },
  };
}
