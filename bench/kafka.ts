// Landing throughput from Kafka against kcat consuming the same topic, in one run.
//
//   npm run bench:kafka -- [FOLDER] [--limit N]
//
// Produces the corpus images (those under the broker's message limit) to a fresh topic, then times
// (a) kcat reading the whole topic to /dev/null: the floor any consumer pays to get the bytes, and
// (b) imagelake's kafka role landing every message: fetch, sniff, hash, durable lake write, catalog
// row and queued job. Needs kcat (installed by scripts/services/apt-install when missing) and a
// broker (IMAGELAKE_KAFKA_BROKERS, or the project's own started by scripts/services/kafka).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Admin, Producer } from '@platformatic/kafka';
import pino from 'pino';
import { loadConfig } from '../src/config/config.ts';
import { startServer } from '../src/server.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { limit: { type: 'string' } } });
const MESSAGE_LIMIT = 9 * 1024 * 1024;

// kcat is installed when missing, as the service scripts install their tools (Debian's kcat package).
if (spawnSync('kcat', ['-V']).status !== 0)
  execFileSync('bash', [new URL('../scripts/services/apt-install', import.meta.url).pathname, 'kcat'], {
    stdio: 'inherit',
  });
if (spawnSync('kcat', ['-V']).status !== 0) throw new Error('kcat is missing: apt-get install kcat');
const script = new URL('../scripts/services/kafka', import.meta.url).pathname;
let bootstrap = process.env.IMAGELAKE_KAFKA_BROKERS;
if (!bootstrap) {
  execFileSync('bash', [script, 'start'], { stdio: 'inherit' });
  bootstrap = execFileSync('bash', [script, 'env'], { encoding: 'utf8' }).trim().split('=')[1]!;
}
const folder =
  positionals[0] ??
  execFileSync('bash', [new URL('../../shared/corpus/fetch.sh', import.meta.url).pathname], {
    encoding: 'utf8',
  }).trim();
const list = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? list(join(dir, e.name)) : /\.(jpe?g|png)$/i.test(e.name) ? [join(dir, e.name)] : [],
  );
const files = list(folder)
  .filter((f) => statSync(f).size <= MESSAGE_LIMIT)
  .sort()
  .slice(0, values.limit ? Number(values.limit) : undefined);
const totalBytes = files.reduce((s, f) => s + statSync(f).size, 0);

const topic = `bench-${randomUUID().slice(0, 8)}`;
const admin = new Admin({ clientId: 'bench', bootstrapBrokers: [bootstrap] });
await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 });
await admin.close();

const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-kafka-'));
const admin_token = 'il_admin_bench';
// The api role only creates the customer; the kafka role starts once the topic is full.
const setup = await startServer(
  loadConfig({ IMAGELAKE_DATA_DIR: dataDir, IMAGELAKE_PORT: '0', IMAGELAKE_ADMIN_TOKEN: admin_token }),
  { roles: ['api'], log: pino({ level: 'warn' }) },
);
const customer = (await (
  await fetch(`${setup.url}/v1/customers`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin_token}`, 'content-type': 'application/json' },
    body: '{"name":"bench"}',
  })
).json()) as { id: string };
await setup.stop();

const producer = new Producer({
  clientId: 'bench',
  bootstrapBrokers: [bootstrap],
  acks: -1,
  maxInflights: 1,
});
for (const [i, file] of files.entries()) {
  await producer.send({
    messages: [
      {
        topic,
        value: readFileSync(file),
        headers: new Map([
          [Buffer.from('customer-id'), Buffer.from(customer.id)],
          [Buffer.from('message-id'), Buffer.from(`b-${i}`)],
        ]),
      },
    ],
  });
}
await producer.close();
console.log(`${files.length} images, ${(totalBytes / 1e6).toFixed(0)} MB in topic ${topic} (3 partitions)`);

let started = performance.now();
const kcat = spawnSync(
  'kcat',
  ['-C', '-b', bootstrap, '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%s'],
  { maxBuffer: 2 ** 31, stdio: ['ignore', 'ignore', 'inherit'] },
);
if (kcat.status !== 0) throw new Error(`kcat failed with ${kcat.status}`);
const kcatSeconds = (performance.now() - started) / 1000;

const server = await startServer(
  loadConfig({
    IMAGELAKE_DATA_DIR: dataDir,
    IMAGELAKE_PORT: '0',
    IMAGELAKE_ADMIN_TOKEN: admin_token,
    IMAGELAKE_KAFKA_BROKERS: bootstrap,
    IMAGELAKE_KAFKA_TOPICS: topic,
    IMAGELAKE_KAFKA_GROUP: `bench-${topic}`,
    IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
    IMAGELAKE_MAX_QUEUE_DEPTH: '100000',
  }),
  { roles: ['kafka'], log: pino({ level: 'warn' }) },
);
// From here the consumer is joining the group and fetching; PostgreSQL's start is not counted.
started = performance.now();
for (;;) {
  const n = Number(
    (
      await server.db
        .selectFrom('images')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .executeTakeFirst()
    )?.n,
  );
  if (n >= files.length) break;
  await new Promise((r) => setTimeout(r, 20));
}
const landSeconds = (performance.now() - started) / 1000;
// Steady state: from the first landing to the last, without the group join before them.
const span = await server.db
  .selectFrom('images')
  .select((eb) => [eb.fn.min('received_at').as('first'), eb.fn.max('received_at').as('last')])
  .executeTakeFirstOrThrow();
const steadySeconds = ((span.last as Date).getTime() - (span.first as Date).getTime()) / 1000;
await server.stop();
await rm(dataDir, { recursive: true, force: true });

const row = (s: number) => ({
  seconds: +s.toFixed(2),
  'messages/s': +(files.length / s).toFixed(1),
  'MB/s': +(totalBytes / 1e6 / s).toFixed(1),
});
console.table({
  'kcat -> /dev/null': row(kcatSeconds),
  'imagelake landing, with group join': row(landSeconds),
  'imagelake landing, steady state': row(steadySeconds * (files.length / Math.max(1, files.length - 1))),
});
console.log(
  `ratio imagelake / kcat: ${(kcatSeconds / landSeconds).toFixed(2)} with the group join, ${(kcatSeconds / steadySeconds).toFixed(2)} in steady state`,
);
