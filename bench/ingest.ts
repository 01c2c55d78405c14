// HTTP landing alone (no processing): imagelake's POST /v1/images against a bare node:http server
// that streams the same uploads to disk and makes them durable (fsync of the file and of its
// folder) before answering, in the same run.
//
//   node bench/ingest.ts [FOLDER] [--files 120] [--concurrency 8] [--rounds 3]
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh (drawn photos when there is none).
// imagelake runs the api role only, on its embedded catalog and folder lake: what is timed is the
// landing (sniff, limits, SHA-256, the original written and flushed, the catalog row and the job in
// one transaction). The client is a process of its own, as a remote one would be: on a thread of
// the servers' process its garbage collections ran on the threads V8 shares between a process's
// isolates, and counted as the servers' CPU. It sends with node:http, which writes each body as it
// is (fetch copies every body first). The two servers take turns, --rounds times each, so a shared
// machine's load falls on both alike; the median round of each is compared, with the CPU each
// server (and imagelake's PostgreSQL) spent per upload. Aim: imagelake at least 0.8 of the baseline.
//
// A third server takes its turn too, the floor: the baseline plus what any landing must do before
// its 202 beyond the bytes on disk, and the baseline does not: the body's SHA-256, and one row for
// it committed to the same PostgreSQL (through the same driver) before the answer. Its ratio to the
// baseline is the most a landing that keeps those promises could reach on the machine.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, createServer, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import pino from 'pino';
import sharp from 'sharp';
import { loadConfig } from '../src/config/config.ts';
import { startServer } from '../src/server.ts';
import { makeDurable } from './durable.ts';
import { cpuByKindBetween, namedCpuMs, processTree, threadCpuMs } from './process-tree.ts';

interface Options {
  folder: string | undefined;
  files: number;
  concurrency: number;
}
interface Round {
  url: string;
  headers: Record<string, string>;
}
interface Sent {
  seconds: number;
}
type Answer = Sent | { totalBytes: number } | { error: string };

if (process.argv[2] === '--client') await client(JSON.parse(process.argv[3]!) as Options);
else await main();

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      files: { type: 'string', default: '120' },
      concurrency: { type: 'string', default: '8' },
      rounds: { type: 'string', default: '3' },
    },
  });
  const FILES = Number(values.files);
  const ROUNDS = Number(values.rounds);
  const ADMIN = 'il_admin_bench-ingest-0123456789abcdefghijklmnopqrs';

  // The baseline: a body streamed to its own file, flushed (fsync of the file, then of its folder so
  // the new name is on disk too), then 202.
  const baselineDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-ingest-bare-'));
  let counter = 0;
  const bare = createServer(async (request, response) => {
    const path = join(baselineDir, `${counter++}.bin`);
    await pipeline(request, createWriteStream(path));
    await makeDurable(path, baselineDir);
    response.writeHead(202, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
  const bareUrl = `http://127.0.0.1:${(bare.address() as { port: number }).port}/`;

  const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-ingest-'));
  const server = await startServer(
    loadConfig({
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_PORT: '0',
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      // Nothing is processed here, so nothing leaves the queue: let it hold every round's uploads.
      IMAGELAKE_MAX_QUEUE_DEPTH: String(FILES * ROUNDS * 2),
      IMAGELAKE_MAX_QUEUE_DEPTH_PER_CUSTOMER: String(FILES * ROUNDS * 2),
    }),
    { roles: ['api'], log: pino({ level: 'warn' }) },
  );
  // The floor: the baseline, the body hashed as it streams, and a row committed before the 202.
  await sql`create table bench_ingest_floor (id bigserial primary key, checksum text not null, bytes bigint not null)`.execute(
    server.db,
  );
  const floorDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-ingest-floor-'));
  const floor = createServer(async (request, response) => {
    const path = join(floorDir, `${counter++}.bin`);
    const hash = createHash('sha256');
    let bytes = 0;
    request.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    await pipeline(request, createWriteStream(path));
    await makeDurable(path, floorDir);
    await sql`insert into bench_ingest_floor (checksum, bytes) values (${hash.digest('hex')}, ${bytes})`.execute(
      server.db,
    );
    response.writeHead(202, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => floor.listen(0, '127.0.0.1', resolve));
  const floorUrl = `http://127.0.0.1:${(floor.address() as { port: number }).port}/`;

  const options: Options = { folder: positionals[0], files: FILES, concurrency: Number(values.concurrency) };
  const clientProcess: ChildProcess = fork(fileURLToPath(import.meta.url), [
    '--client',
    JSON.stringify(options),
  ]);
  const answers: Array<(answer: Answer) => void> = [];
  clientProcess.on('message', (message) => answers.shift()?.(message as Answer));
  clientProcess.on('exit', (code) => {
    if (answers.length > 0) {
      console.error(`the client ended (${code}) before it answered`);
      process.exit(1);
    }
  });
  const ask = <T>(message: Round | 'ready'): Promise<T> =>
    new Promise((resolve, reject) => {
      answers.push((answer) => ('error' in answer ? reject(new Error(answer.error)) : resolve(answer as T)));
      clientProcess.send(message);
    });

  /**
   * One round: its seconds, and the CPU milliseconds per upload of the server and of its PostgreSQL,
   * with the server's split by thread: the event loop, V8's threads (garbage collection, of a heap
   * both servers share) and libuv's (file writes, fsyncs).
   */
  async function timed(round: Round) {
    const process0 = process.cpuUsage();
    const threads0 = threadCpuMs(process.pid);
    const postgres0 = postgresCpu(clientProcess.pid!);
    const sent = await ask<Sent>(round);
    const used = process.cpuUsage(process0);
    const threads = threadCpuMs(process.pid);
    const of = (name: string) => ((threads.get(name) ?? 0) - (threads0.get(name) ?? 0)) / FILES;
    return {
      seconds: sent.seconds,
      serverMs: (used.user + used.system) / 1000 / FILES,
      split: `event loop ${of('MainThread').toFixed(1)}, V8 ${of('V8Worker').toFixed(1)}, libuv ${of('libuv-worker').toFixed(1)}`,
      postgresMs: cpuByKindBetween(postgres0, postgresCpu(clientProcess.pid!)).postgres / FILES,
    };
  }

  try {
    const { totalBytes } = await ask<{ totalBytes: number }>('ready');
    const customer = (await (
      await fetch(`${server.url}/v1/customers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'ingest' }),
      })
    ).json()) as { apiKey: string };
    console.log(
      `${FILES} uploads of ${(totalBytes / 1e6).toFixed(0)} MB, ${values.concurrency} at a time, ${ROUNDS} rounds each (load average ${loadavg()[0]!.toFixed(1)})`,
    );
    const rounds: {
      bare: Awaited<ReturnType<typeof timed>>[];
      floor: Awaited<ReturnType<typeof timed>>[];
      imagelake: Awaited<ReturnType<typeof timed>>[];
    } = { bare: [], floor: [], imagelake: [] };
    const mbs = (s: number) => (totalBytes / 1e6 / s).toFixed(0);
    for (let round = 0; round < ROUNDS; round++) {
      rounds.bare.push(
        await timed({ url: bareUrl, headers: { 'content-type': 'application/octet-stream' } }),
      );
      rounds.floor.push(
        await timed({ url: floorUrl, headers: { 'content-type': 'application/octet-stream' } }),
      );
      rounds.imagelake.push(
        await timed({
          url: `${server.url}/v1/images`,
          headers: { authorization: `Bearer ${customer.apiKey}`, 'content-type': 'application/octet-stream' },
        }),
      );
      const [b, f, i] = [rounds.bare.at(-1)!, rounds.floor.at(-1)!, rounds.imagelake.at(-1)!];
      console.log(
        `round ${round + 1}: bare ${mbs(b.seconds)} MB/s, floor ${mbs(f.seconds)} MB/s, imagelake ${mbs(i.seconds)} MB/s, ratio ${(b.seconds / i.seconds).toFixed(2)} (floor ${(b.seconds / f.seconds).toFixed(2)})`,
      );
    }
    const median = <T extends { seconds: number }>(xs: T[]): T =>
      [...xs].sort((a, b) => a.seconds - b.seconds)[Math.floor(xs.length / 2)]!;
    const [b, f, i] = [median(rounds.bare), median(rounds.floor), median(rounds.imagelake)];
    const rate = (s: number) => `${mbs(s)} MB/s, ${(FILES / s).toFixed(0)} uploads/s`;
    console.log(
      `bare node:http to disk with fsync: ${rate(b.seconds)}, ${b.serverMs.toFixed(1)} ms CPU per upload (${b.split})`,
    );
    console.log(
      `floor (+ SHA-256, a row committed): ${rate(f.seconds)}, ${f.serverMs.toFixed(1)} ms CPU per upload (${f.split}) + PostgreSQL ${f.postgresMs.toFixed(1)} ms`,
    );
    console.log(
      `imagelake landing:                 ${rate(i.seconds)}, ${i.serverMs.toFixed(1)} ms CPU per upload (${i.split}) + PostgreSQL ${i.postgresMs.toFixed(1)} ms`,
    );
    console.log(`ratio imagelake / bare: ${(b.seconds / i.seconds).toFixed(2)} (aim: at least 0.8)`);
    console.log(
      `floor / bare: ${(b.seconds / f.seconds).toFixed(2)} (the most a landing that hashes and commits a row before its 202 could reach here); imagelake / floor: ${(f.seconds / i.seconds).toFixed(2)}`,
    );
  } finally {
    clientProcess.kill();
    await server.stop();
    await new Promise((resolve) => bare.close(resolve));
    await new Promise((resolve) => floor.close(resolve));
    await rm(dataDir, { recursive: true, force: true });
    await rm(baselineDir, { recursive: true, force: true });
    await rm(floorDir, { recursive: true, force: true });
  }
}

/** The CPU of this process's children but the client: the embedded PostgreSQL's processes, ended backends included. */
function postgresCpu(clientPid: number) {
  const children = processTree(process.pid, [clientPid]);
  children.delete(process.pid);
  return namedCpuMs(children);
}

/** The client process: builds the uploads once, then sends a round whenever it is asked. */
async function client(options: Options): Promise<void> {
  const images = await photos(options.folder);
  // Every upload distinct (the platform dedupes nothing by content, but a fair test sends new bytes):
  // the last byte after the JPEG/PNG end is a counter, which decoders ignore.
  const uploads = Array.from({ length: options.files }, (_, i) =>
    Buffer.concat([images[i % images.length]!, Buffer.from(`#${i}`)]),
  );
  // The bench's end (or its crash) ends the client too.
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (message: Round | 'ready') => {
    const answer = (a: Answer) => process.send!(a);
    try {
      if (message === 'ready') answer({ totalBytes: uploads.reduce((n, u) => n + u.length, 0) });
      else answer({ seconds: await send(uploads, options.concurrency, message) });
    } catch (error) {
      answer({ error: String(error) });
    }
  });
}

/** Sends every upload, `concurrency` at a time on kept-alive connections; returns the seconds it took. */
async function send(uploads: Buffer[], concurrency: number, { url, headers }: Round): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < uploads.length; i = next++) await post(agent, url, headers, uploads[i]!);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return seconds;
}

function post(agent: Agent, url: string, headers: Record<string, string>, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const sent = request(
      url,
      { method: 'POST', agent, headers: { ...headers, 'content-length': String(body.length) } },
      (response) => {
        response.resume();
        response.on('error', reject);
        response.on('end', () =>
          response.statusCode === 202
            ? resolve()
            : reject(new Error(`${url} answered ${response.statusCode}`)),
        );
      },
    );
    sent.on('error', reject);
    sent.end(body);
  });
}

function corpus(given: string | undefined): string | undefined {
  if (given) return given;
  const script = fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url));
  return existsSync(script) ? execFileSync('bash', [script], { encoding: 'utf8' }).trim() : undefined;
}

async function photos(given: string | undefined): Promise<Buffer[]> {
  const folder = corpus(given);
  const files = folder
    ? readdirSync(folder, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(jpe?g|png)$/i.test(f))
    : [];
  if (files.length > 0) return files.sort().map((f) => readFileSync(join(folder!, f)));
  return Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      sharp({ create: { width: 3000, height: 2000, channels: 3, background: { r: i * 20, g: 80, b: 160 } } })
        .jpeg({ quality: 90 })
        .toBuffer(),
    ),
  );
}
