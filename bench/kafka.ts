// Landing throughput from Kafka against kcat consuming the same topic, in one run.
//
//   npm run bench:kafka -- [FOLDER] [--limit N] [--repeat 5] [--runs 3] [--profile DIR]
//
// Produces the corpus images (those under the broker's message limit) --repeat times to a fresh
// topic, each copy with its own message ids, so each timing lasts seconds rather than one second
// that a single hiccup of a shared machine moves a lot. Then, --runs times, it times one after the
// other (a) kcat reading the whole topic to /dev/null: the floor any consumer pays to get the bytes,
// (b) the Kafka client imagelake uses (@platformatic/kafka) reading it in a fresh group in this
// process, doing nothing with the messages: the floor for a consumer in Node (after the server's
// first start, so under the same V8 settings as a server: src/gc-tuning.ts), and
// (c) imagelake's kafka role landing every message, on a fresh catalog and lake and in a fresh
// consumer group: fetch, sniff, hash, durable lake write, catalog row and queued job. The ratio
// compared with the aim is (c) against (a); (c) against (b) says what the landing itself costs.
// Then (d) the durable floor: a bare loop writing the same bytes (from memory) as the fs lake does,
// as many at once as the landing writes, each to a temporary file fsynced, renamed and its folder
// fsynced, with nothing else (no Kafka, no SHA-256, no catalog): kcat against (d) is the most a
// landing that makes each image durable could reach on this machine and disk.
// Each run's ratio is printed with the machine's load at its start and the CPU seconds the landing took (node,
// and its PostgreSQL), then the median and spread of the runs. --profile DIR writes a CPU profile of
// each landing (node's main thread: open it in Chrome's DevTools or speedscope).
// Needs kcat (installed by scripts/services/apt-install when missing) and a broker
// (IMAGELAKE_KAFKA_BROKERS, or the project's own started by scripts/services/kafka).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID, webcrypto } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Admin, Consumer, Producer } from '@platformatic/kafka';
import { sql } from 'kysely';
import pino from 'pino';
import { loadConfig } from '../src/config/config.ts';
import { startServer } from '../src/server.ts';
import { corpusFolder, listImages } from './corpus.ts';
import { writeDurably } from './durable.ts';
import { cpuByKindBetween, namedCpuMs, processTree, threadCpuMs } from './process-tree.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    limit: { type: 'string' },
    repeat: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    profile: { type: 'string' },
  },
});
const repeat = Number(values.repeat);
const runs = Number(values.runs);
if (!(Number.isInteger(repeat) && repeat >= 1 && Number.isInteger(runs) && runs >= 1))
  throw new Error('--repeat and --runs take whole numbers from 1');
const MESSAGE_LIMIT = 9 * 1024 * 1024;
const ADMIN_TOKEN = 'il_admin_bench';

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
const files = listImages(corpusFolder(positionals[0]))
  .filter((f) => statSync(f).size <= MESSAGE_LIMIT)
  .slice(0, values.limit ? Number(values.limit) : undefined);
const messages = files.length * repeat;
const totalBytes = files.reduce((s, f) => s + statSync(f).size, 0) * repeat;

// Every run lands into a copy of one catalog holding the customer the messages name: a fresh
// catalog each time (no idempotency key seen before), without creating a customer with a new id.
const template = await mkdtemp(join(tmpdir(), 'imagelake-bench-kafka-'));
const serverConfig = (dataDir: string, extra: Record<string, string> = {}) =>
  loadConfig({
    IMAGELAKE_DATA_DIR: dataDir,
    IMAGELAKE_PORT: '0',
    IMAGELAKE_POSTGRES_PORT: '0',
    IMAGELAKE_ADMIN_TOKEN: ADMIN_TOKEN,
    ...extra,
  });
const setup = await startServer(serverConfig(template), { roles: ['api'], log: pino({ level: 'warn' }) });
const customer = (await (
  await fetch(`${setup.url}/v1/customers`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: '{"name":"bench"}',
  })
).json()) as { id: string };
await setup.stop();

const topic = `bench-${randomUUID().slice(0, 8)}`;
const admin = new Admin({ clientId: 'bench', bootstrapBrokers: [bootstrap] });
await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 });
const producer = new Producer({
  clientId: 'bench',
  bootstrapBrokers: [bootstrap],
  acks: -1,
  maxInflights: 1,
});
for (let copy = 0; copy < repeat; copy++) {
  for (const [i, file] of files.entries()) {
    await producer.send({
      messages: [
        {
          topic,
          value: readFileSync(file),
          headers: new Map([
            [Buffer.from('customer-id'), Buffer.from(customer.id)],
            [Buffer.from('message-id'), Buffer.from(`b-${copy}-${i}`)],
          ]),
        },
      ],
    });
  }
}
await producer.close();
console.log(
  `${messages} messages (${files.length} images x ${repeat}), ${(totalBytes / 1e6).toFixed(0)} MB in topic ${topic} (3 partitions); ${runs} runs`,
);

function timeKcat(): number {
  const started = performance.now();
  const kcat = spawnSync(
    'kcat',
    ['-C', '-b', bootstrap!, '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%s'],
    { maxBuffer: 2 ** 31, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  if (kcat.status !== 0) throw new Error(`kcat failed with ${kcat.status}`);
  return (performance.now() - started) / 1000;
}

/**
 * The Kafka client imagelake uses, reading the topic from its start in a fresh group, as the kafka
 * role consumes (ingest/kafka/consumer.ts): its fetch wait, and `inHand` messages in hand.
 */
async function consumeTopic(group: string, inHand: number) {
  const consumer = new Consumer({
    clientId: 'bench',
    bootstrapBrokers: [bootstrap!],
    groupId: `bench-${topic}-${group}`,
    autocommit: false,
  });
  const stream = await consumer.consume({
    topics: [topic],
    autocommit: false,
    mode: 'earliest',
    maxWaitTime: 500,
    highWaterMark: inHand,
  });
  return { consumer, stream };
}

/** Seconds for the Kafka client alone to receive every message, its group join included. */
async function timeClient(run: number): Promise<number> {
  const started = performance.now();
  const { consumer, stream } = await consumeTopic(`client-${run}`, 8);
  let received = 0;
  await new Promise<void>((resolve, reject) => {
    stream.on('data', () => {
      if (++received === messages) resolve();
    });
    stream.on('error', reject);
  });
  const seconds = (performance.now() - started) / 1000;
  await stream.close();
  await consumer.close();
  return seconds;
}

/**
 * Seconds for a bare loop to make the topic's bytes durable as the fs lake does (src/lake/fs.ts), as
 * many at once as the landing writes: no Kafka, no hashing, no catalog.
 */
async function timeFloor(): Promise<number> {
  const bodies = files.map((f) => readFileSync(f));
  const dir = await mkdtemp(join(tmpdir(), 'imagelake-bench-floor-'));
  const { concurrency } = serverConfig(template).kafka;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < messages; i = next++) {
        const body = bodies[i % bodies.length]!;
        await writeDurably(body, join(dir, `${i}.jpg`), dir);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await rm(dir, { recursive: true, force: true });
  return seconds;
}

/**
 * Seconds for a bare landing to take the topic in, its group join included: the Kafka client in a
 * fresh group, as many messages being written at once as the landing writes (the stream paused
 * beyond them), each message's SHA-256 (WebCrypto, beside its write, as the landing hashes a body
 * in memory), its bytes made durable as the durable floor makes them, and one row committed to the
 * same PostgreSQL through the same driver. No contract, sniffing, customer, quota, queue, spans,
 * metrics or offset commits. The most a landing that keeps the landing's promises could reach here
 * with this client, in Node.
 */
async function timeBareLanding(run: number): Promise<number> {
  const dataDir = `${template}-bare${run}`;
  execFileSync('cp', ['-a', template, dataDir]);
  // Only the catalog: its PostgreSQL and pool.
  const server = await startServer(serverConfig(dataDir), { roles: [], log: pino({ level: 'warn' }) });
  await sql`create table bench_kafka_floor (id bigserial primary key, checksum text not null, bytes bigint not null)`.execute(
    server.db,
  );
  const dir = join(dataDir, 'bare-lake');
  await mkdir(dir);
  const { concurrency } = serverConfig(template).kafka;
  const started = performance.now();
  const { consumer, stream } = await consumeTopic(`bare-${run}`, concurrency);
  let writing = 0;
  let landed = 0;
  let counter = 0;
  await new Promise<void>((resolve, reject) => {
    stream.on('error', reject);
    stream.on('data', (message: { value: Buffer }) => {
      if (++writing >= concurrency) stream.pause();
      const body = message.value;
      const path = join(dir, `${counter++}.jpg`);
      const checksum = webcrypto.subtle.digest('SHA-256', body);
      writeDurably(body, path, dir)
        .then(async () => {
          if (writing-- >= concurrency) stream.resume();
          const hex = Buffer.from(await checksum).toString('hex');
          await sql`insert into bench_kafka_floor (checksum, bytes) values (${hex}, ${body.length})`.execute(
            server.db,
          );
          if (++landed === messages) resolve();
        })
        .catch(reject);
    });
  });
  const seconds = (performance.now() - started) / 1000;
  await stream.close();
  await consumer.close();
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
  return seconds;
}

/**
 * Seconds to land every message with the group join, and from the first landing to the last; the
 * CPU seconds of this process (the server runs in it) and of its PostgreSQL meanwhile.
 */
async function timeLanding(run: number): Promise<Omit<Run, 'load' | 'kcat' | 'client' | 'floor' | 'bare'>> {
  const dataDir = `${template}-run${run}`;
  // cp -a keeps the catalog's files owned by the user PostgreSQL runs as.
  execFileSync('cp', ['-a', template, dataDir]);
  const server = await startServer(
    serverConfig(dataDir, {
      IMAGELAKE_KAFKA_BROKERS: bootstrap!,
      IMAGELAKE_KAFKA_TOPICS: topic,
      IMAGELAKE_KAFKA_GROUP: `bench-${topic}-${run}`,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
      IMAGELAKE_MAX_QUEUE_DEPTH: String(messages * 2),
    }),
    { roles: ['kafka'], log: pino({ level: 'warn' }) },
  );
  const profiler = values.profile ? new Session() : undefined;
  if (profiler) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
  }
  const cpu0 = namedCpuMs(processTree(process.pid));
  const threads0 = threadCpuMs(process.pid);
  // From here the consumer is joining the group and fetching; PostgreSQL's start is not counted.
  const started = performance.now();
  for (;;) {
    const n = Number(
      (
        await server.db
          .selectFrom('images')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .executeTakeFirst()
      )?.n,
    );
    if (n >= messages) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const withJoin = (performance.now() - started) / 1000;
  const cpu = cpuByKindBetween(cpu0, namedCpuMs(processTree(process.pid)));
  const threads = threadCpuMs(process.pid);
  const of = (name: string) => ((threads.get(name) ?? 0) - (threads0.get(name) ?? 0)) / 1000;
  const split = `event loop ${of('MainThread').toFixed(2)}, V8 ${of('V8Worker').toFixed(2)}, libuv ${of('libuv-worker').toFixed(2)}`;
  if (profiler) {
    const { profile } = await profiler.post('Profiler.stop');
    const file = join(values.profile!, `kafka-landing-run${run}.cpuprofile`);
    await mkdir(values.profile!, { recursive: true });
    await writeFile(file, JSON.stringify(profile));
    profiler.disconnect();
    console.log(`CPU profile of the landing: ${file}`);
  }
  // Steady state: from the first landing to the last, without the group join before them, scaled
  // by n/(n-1) since the span between n landings covers n-1 of them.
  const span = await server.db
    .selectFrom('images')
    .select((eb) => [eb.fn.min('received_at').as('first'), eb.fn.max('received_at').as('last')])
    .executeTakeFirstOrThrow();
  const steady =
    (((span.last as Date).getTime() - (span.first as Date).getTime()) / 1000) *
    (messages / Math.max(1, messages - 1));
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
  return { withJoin, steady, nodeCpu: cpu.node / 1000, split, postgresCpu: cpu.postgres / 1000 };
}

interface Run {
  load: number;
  kcat: number;
  client: number;
  floor: number;
  /** The bare landing (timeBareLanding), its group join included. */
  bare: number;
  withJoin: number;
  steady: number;
  nodeCpu: number;
  /** The node CPU seconds by thread: the event loop, V8's threads (garbage collection), libuv's (file writes, hashing). */
  split: string;
  postgresCpu: number;
}
const results: Run[] = [];
const rate = (s: number) => `${(messages / s).toFixed(0)} msg/s, ${(totalBytes / 1e6 / s).toFixed(0)} MB/s`;
try {
  for (let run = 1; run <= runs; run++) {
    // What the last phase left for the kernel to write (the topic just produced, a catalog) is
    // written now, not during this run's fsyncs.
    execFileSync('sync');
    const load = loadavg()[0]!;
    const kcat = timeKcat();
    // The landing before the client alone, so the first run's landing starts as cold as a server.
    const landing = await timeLanding(run);
    const client = await timeClient(run);
    const floor = await timeFloor();
    const bare = await timeBareLanding(run);
    const { withJoin, steady } = landing;
    results.push({ load, kcat, client, floor, bare, ...landing });
    console.log(
      `run ${run} (load ${load.toFixed(2)}): kcat ${kcat.toFixed(2)} s (${rate(kcat)}), client alone ${client.toFixed(2)} s, durable floor ${floor.toFixed(2)} s, bare landing ${bare.toFixed(2)} s, landing ${withJoin.toFixed(2)} s (${rate(withJoin)}; CPU ${landing.nodeCpu.toFixed(2)} s node (${landing.split}), ${landing.postgresCpu.toFixed(2)} s PostgreSQL), steady ${steady.toFixed(2)} s; ratio ${(kcat / withJoin).toFixed(2)} with the group join, ${(kcat / steady).toFixed(2)} in steady state`,
    );
  }
} finally {
  await rm(template, { recursive: true, force: true });
  // The topic holds the corpus several times over: the broker is shared, so it goes with the run.
  await admin.deleteTopics({ topics: [topic] }).catch(() => {});
  await admin.close();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const summary = (xs: number[]) =>
  `${median(xs).toFixed(2)} (runs ${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
console.table(
  Object.fromEntries(
    results.map((r, i) => [
      `run ${i + 1}`,
      {
        load: +r.load.toFixed(2),
        'kcat s': +r.kcat.toFixed(2),
        'client s': +r.client.toFixed(2),
        'floor s': +r.floor.toFixed(2),
        'bare s': +r.bare.toFixed(2),
        'landing s': +r.withJoin.toFixed(2),
        'steady s': +r.steady.toFixed(2),
        'CPU s node': +r.nodeCpu.toFixed(2),
        'CPU s pg': +r.postgresCpu.toFixed(2),
        'ratio, with join': +(r.kcat / r.withJoin).toFixed(2),
        'ratio, steady': +(r.kcat / r.steady).toFixed(2),
      },
    ]),
  ),
);
console.log(
  `ratio imagelake / kcat: ${summary(results.map((r) => r.kcat / r.withJoin))} with the group join, ${summary(results.map((r) => r.kcat / r.steady))} in steady state (aim 0.9 with the group join)`,
);
console.log(
  `ratio Kafka client alone / kcat: ${summary(results.map((r) => r.kcat / r.client))}; imagelake / client alone: ${summary(results.map((r) => r.client / r.withJoin))}, both with the group join`,
);
console.log(
  `durable floor: ${summary(results.map((r) => r.floor))} s; kcat / durable floor: ${summary(results.map((r) => r.kcat / r.floor))}, the most a landing that makes each image durable could reach here; imagelake / durable floor: ${summary(results.map((r) => r.floor / r.withJoin))}`,
);
console.log(
  `bare landing / kcat: ${summary(results.map((r) => r.kcat / r.bare))}, the most a landing in Node with this client that hashes, makes durable and records each image could reach here; imagelake / bare landing: ${summary(results.map((r) => r.bare / r.withJoin))}`,
);
