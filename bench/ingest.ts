// HTTP landing alone (no processing): imagelake's POST /v1/images against a bare node:http server
// that streams the same uploads to disk and fsyncs them before answering, in the same run.
//
//   node bench/ingest.ts [FOLDER] [--files 120] [--concurrency 8] [--rounds 3]
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh (drawn photos when there is none).
// imagelake runs the api role only, on its embedded catalog and folder lake: what is timed is the
// landing (sniff, limits, SHA-256, the original written and flushed, the catalog row and the job in
// one transaction). The two take turns, --rounds times each, so a shared machine's load falls on
// both alike; the median round of each is compared. Aim: imagelake at least 0.8 of the baseline.
import { execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import sharp from 'sharp';
import { loadConfig } from '../src/config/config.ts';
import { startServer } from '../src/server.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    files: { type: 'string', default: '120' },
    concurrency: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
  },
});
const FILES = Number(values.files);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const ADMIN = 'il_admin_bench-ingest-0123456789abcdefghijklmnopqrs';

function corpus(): string | undefined {
  if (positionals[0]) return positionals[0];
  const script = fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url));
  return existsSync(script) ? execFileSync('bash', [script], { encoding: 'utf8' }).trim() : undefined;
}

async function photos(): Promise<Buffer[]> {
  const folder = corpus();
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

const images = await photos();
// Every upload distinct (the platform dedupes nothing by content, but a fair test sends new bytes):
// the last byte after the JPEG/PNG end is a counter, which decoders ignore.
const uploads = Array.from({ length: FILES }, (_, i) =>
  Buffer.concat([images[i % images.length]!, Buffer.from(`#${i}`)]),
);
const totalBytes = uploads.reduce((n, u) => n + u.length, 0);

/** Sends every upload, CONCURRENCY at a time; returns the seconds it took. */
async function send(url: string, headers: Record<string, string>): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < uploads.length; i = next++) {
        const response = await fetch(url, { method: 'POST', headers, body: new Uint8Array(uploads[i]!) });
        await response.arrayBuffer();
        if (response.status !== 202) throw new Error(`${url} answered ${response.status}`);
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

// The baseline: a body streamed to its own file, flushed (fsync), then 202.
const baselineDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-ingest-bare-'));
let counter = 0;
const bare = createServer(async (request, response) => {
  const path = join(baselineDir, `${counter++}.bin`);
  await pipeline(request, createWriteStream(path));
  const handle = await open(path, 'r');
  await handle.sync();
  await handle.close();
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

try {
  const customer = (await (
    await fetch(`${server.url}/v1/customers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ingest' }),
    })
  ).json()) as { apiKey: string };
  console.log(
    `${FILES} uploads of ${(totalBytes / 1e6).toFixed(0)} MB, ${CONCURRENCY} at a time, ${ROUNDS} rounds each`,
  );
  const times: { bare: number[]; imagelake: number[] } = { bare: [], imagelake: [] };
  for (let round = 0; round < ROUNDS; round++) {
    times.bare.push(await send(bareUrl, { 'content-type': 'application/octet-stream' }));
    times.imagelake.push(
      await send(`${server.url}/v1/images`, {
        authorization: `Bearer ${customer.apiKey}`,
        'content-type': 'application/octet-stream',
      }),
    );
    console.log(
      `round ${round + 1}: bare ${(totalBytes / 1e6 / times.bare.at(-1)!).toFixed(0)} MB/s, imagelake ${(totalBytes / 1e6 / times.imagelake.at(-1)!).toFixed(0)} MB/s`,
    );
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rate = (s: number) =>
    `${(totalBytes / 1e6 / s).toFixed(0)} MB/s, ${(FILES / s).toFixed(0)} uploads/s`;
  console.log(`bare node:http to disk with fsync: ${rate(median(times.bare))}`);
  console.log(`imagelake landing:                 ${rate(median(times.imagelake))}`);
  console.log(
    `ratio imagelake / bare: ${(median(times.bare) / median(times.imagelake)).toFixed(2)} (aim: at least 0.8)`,
  );
} finally {
  await server.stop();
  await new Promise((resolve) => bare.close(resolve));
  await rm(dataDir, { recursive: true, force: true });
  await rm(baselineDir, { recursive: true, force: true });
}
