// Throughput of the whole platform against bare sharp doing the same image work, in one run.
//
//   npm run bench -- [FOLDER] [--limit N] [--concurrency N]
//
// The platform traces when OTEL_* settings say so; `npm run bench:tracing` compares on and off.
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh. The platform side uploads every
// file over HTTP, from a client process of its own (pipeline-client.ts) as a remote client would,
// and waits until the last one is processed: landing, lake writes (fsynced), the job
// queue, worker threads and the catalog included. The baseline reads the same files and does the
// same image work with sharp directly: SHA-256, header, one decode to 1280 px, two WebP renditions,
// the perceptual hash.
//
// Both sides are warmed up before the clock, as a server that has been running is: bare sharp on a
// few of the files, the platform on WARM_UP photos of its own (drawn here, so none is a duplicate of
// the corpus) uploaded and processed end to end. A cold server spent about a tenth more CPU on the
// corpus's first images (its JavaScript not yet compiled, its pools and statements not yet made).
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import pino from 'pino';
import sharp from 'sharp';
import { startTracing, stopTracing } from '../src/observability/tracing.ts';
import type { UploadAnswer, UploadJob } from './pipeline-client.ts';
import { startBareLanding } from './pipeline-floor.ts';

// With OTEL_* set (bench/tracing.ts runs it so), tracing starts before the platform's modules load,
// as bin/imagelake.js does.
const traced = await startTracing();
const { loadConfig } = await import('../src/config/config.ts');
const { phashFromGrey32 } = await import('../src/processing/phash.ts');
const { startServer } = await import('../src/server.ts');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { limit: { type: 'string' }, concurrency: { type: 'string' } },
});
const cores = availableParallelism();
const concurrency = Number(values.concurrency ?? cores * 2);

function corpus(): string {
  if (positionals[0]) return positionals[0];
  const script = new URL('../../shared/corpus/fetch.sh', import.meta.url).pathname;
  return execFileSync('bash', [script], { encoding: 'utf8' }).trim();
}

function listImages(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listImages(path));
    else if (/\.(jpe?g|png|webp|gif|avif|tiff?|heic|heif)$/i.test(entry.name)) out.push(path);
  }
  return out.sort();
}

const files = listImages(corpus()).slice(0, values.limit ? Number(values.limit) : undefined);
const totalBytes = files.reduce((sum, f) => sum + statSync(f).size, 0);
if (files.length === 0) throw new Error('No images found; pass a folder of images.');

async function inParallel<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
  label: string,
): Promise<number> {
  const bar = new cliProgress.SingleBar(
    { format: `${label.padEnd(10)} [{bar}] {value}/{total}`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(items.length, 0);
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        await work(items[next++]!);
        bar.increment();
      }
    }),
  );
  bar.stop();
  return (performance.now() - started) / 1000;
}

// The same image work the pipeline does, written the plain way with sharp.
async function bareSharp(path: string): Promise<void> {
  const input = readFileSync(path);
  createHash('sha256').update(input).digest('hex');
  await sharp(input).metadata();
  const { data, info } = await sharp(input)
    .autoOrient()
    .resize({ width: 1280, height: 1280, fit: 'inside', withoutEnlargement: true })
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  const raw = () => sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  await Promise.all([
    raw().resize({ width: 256, height: 256, fit: 'inside' }).webp({ quality: 78, effort: 2 }).toBuffer(),
    raw().webp({ quality: 82, effort: 2 }).toBuffer(),
    raw()
      .flatten({ background: '#fff' })
      .greyscale()
      .resize(32, 32, { fit: 'fill' })
      .raw()
      .toBuffer()
      .then(phashFromGrey32),
  ]);
}

/** The upload client (pipeline-client.ts), started and ready: its start is not timed. */
async function startClient(): Promise<ChildProcess> {
  const client = fork(fileURLToPath(new URL('./pipeline-client.ts', import.meta.url)));
  await new Promise<void>((resolve, reject) => {
    client.once('message', () => resolve());
    client.once('exit', (code) => reject(new Error(`the upload client ended (${code})`)));
  });
  return client;
}

/**
 * Uploads every file from the client process, as a remote client would, and collects the ids the
 * server gave them.
 */
async function uploadElsewhere(client: ChildProcess, job: UploadJob, ids: string[]): Promise<void> {
  const bar = new cliProgress.SingleBar(
    { format: `${'uploading'.padEnd(10)} [{bar}] {value}/{total}`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(job.files.length, 0);
  try {
    await new Promise<void>((resolve, reject) => {
      client.on('message', (answer: UploadAnswer) => {
        if ('done' in answer) {
          ids.push(answer.done);
          bar.increment();
        } else if ('end' in answer) resolve();
        else if ('error' in answer) reject(new Error(answer.error));
      });
      client.once('exit', (code) => reject(new Error(`the upload client ended (${code})`)));
      client.send(job);
    });
  } finally {
    bar.stop();
    client.kill();
  }
}

/** Photos drawn for the platform's warm-up, as many as WARM_UP. */
const WARM_UP = 8;

async function warmUpPhotos(dir: string): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < WARM_UP; i++) {
    const path = join(dir, `warm-up-${i}.jpg`);
    await sharp({
      create: {
        width: 2400,
        height: 1600,
        channels: 3,
        background: '#000',
        noise: { type: 'gaussian', mean: 100 + i * 5, sigma: 30 },
      },
    })
      .blur(2)
      .jpeg({ quality: 85 })
      .toFile(path);
    paths.push(path);
  }
  return paths;
}

/** The platform's seconds for the corpus, and its process's CPU seconds in that time (PostgreSQL apart). */
async function platform(): Promise<{ seconds: number; cpuSeconds: number }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-'));
  const admin = 'il_admin_bench';
  const server = await startServer(
    loadConfig({
      ...process.env,
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_PORT: '0',
      IMAGELAKE_ADMIN_TOKEN: admin,
      IMAGELAKE_POLL_INTERVAL: '100ms',
    }),
    { log: pino({ level: 'warn' }) },
  );
  try {
    const url = server.url!;
    const customer = (await (
      await fetch(`${url}/v1/customers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: '{"name":"bench"}',
      })
    ).json()) as { apiKey: string };
    const auth = { authorization: `Bearer ${customer.apiKey}` };
    // One count in the catalog per poll, so waiting costs the server almost nothing (a listing
    // through the API would build every image's view, near-duplicate counts included, each time).
    const settledCount = async () =>
      Number(
        (
          await server.db
            .selectFrom('images')
            .select((eb) => eb.fn.countAll<string>().as('n'))
            .where('status', 'in', ['processed', 'failed'])
            .executeTakeFirstOrThrow()
        ).n,
      );
    const warmUp = await warmUpPhotos(dataDir);
    await uploadElsewhere(
      await startClient(),
      { url, apiKey: customer.apiKey, files: warmUp, concurrency },
      [],
    );
    while ((await settledCount()) < warmUp.length) await new Promise((r) => setTimeout(r, 100));

    const ids: string[] = [];
    const client = await startClient();
    const cpu = process.cpuUsage();
    const started = performance.now();
    await uploadElsewhere(client, { url, apiKey: customer.apiKey, files, concurrency }, ids);
    const bar = new cliProgress.SingleBar(
      { format: 'processing [{bar}] {value}/{total}', hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(ids.length, 0);
    for (let done = 0; done < ids.length; ) {
      await new Promise((r) => setTimeout(r, 100));
      done = (await settledCount()) - warmUp.length;
      bar.update(done);
    }
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    const failed = (
      (await (await fetch(`${url}/v1/images?status=failed&limit=500`, { headers: auth })).json()) as {
        images: Array<{ id: string; error?: { code: string } }>;
      }
    ).images.map((i) => `${i.id}: ${i.error?.code}`);
    bar.stop();
    if (failed.length) console.log(`failed: ${failed.join(', ')}`);
    return { seconds, cpuSeconds: (used.user + used.system) / 1e6 };
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/**
 * The floor (pipeline-floor.ts): the same client uploads every file to a bare server that only lands
 * it durably, and bare sharp works on each landed file, as many at once as the platform has pipeline
 * threads. Its seconds, from the first upload to the last image done.
 */
async function floor(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'imagelake-bench-floor-'));
  const bare = await startBareLanding(dir, bareSharp, cores);
  try {
    const client = await startClient();
    const started = performance.now();
    await uploadElsewhere(client, { url: bare.url, apiKey: 'none', files, concurrency }, []);
    await bare.processed(files.length);
    return (performance.now() - started) / 1000;
  } finally {
    await bare.close();
    await rm(dir, { recursive: true, force: true });
  }
}

console.log(
  `${files.length} images, ${(totalBytes / 1e6).toFixed(0)} MB, ${cores} cores, concurrency ${concurrency}`,
);
// Warm up libvips and the disk cache so neither side pays for it alone.
await inParallel(files.slice(0, Math.min(4, files.length)), cores, bareSharp, 'warm-up');
const cpu = process.cpuUsage();
const baseSeconds = process.env.BENCH_SKIP_BASE ? 1 : await inParallel(files, cores, bareSharp, 'bare sharp');
const baseCpu = process.cpuUsage(cpu);
const { seconds: platformSeconds, cpuSeconds: platformCpuSeconds } = await platform();
const floorSeconds = process.env.BENCH_SKIP_BASE ? 1 : await floor();
if (process.env.BENCH_CPU)
  console.log(
    'cpu s (user+system) bare',
    (baseCpu.user + baseCpu.system) / 1e6,
    'platform process',
    platformCpuSeconds,
  );

const rate = (s: number) => files.length / s;
console.log('');
console.table({
  'bare sharp': {
    seconds: +baseSeconds.toFixed(2),
    'images/s': +rate(baseSeconds).toFixed(2),
    'MB/s': +(totalBytes / 1e6 / baseSeconds).toFixed(1),
  },
  imagelake: {
    seconds: +platformSeconds.toFixed(2),
    'images/s': +rate(platformSeconds).toFixed(2),
    'MB/s': +(totalBytes / 1e6 / platformSeconds).toFixed(1),
  },
  'floor: bare landing + bare sharp': {
    seconds: +floorSeconds.toFixed(2),
    'images/s': +rate(floorSeconds).toFixed(2),
    'MB/s': +(totalBytes / 1e6 / floorSeconds).toFixed(1),
  },
});
console.log(`ratio imagelake / bare sharp: ${(rate(platformSeconds) / rate(baseSeconds)).toFixed(2)}`);
console.log(
  `floor / bare sharp: ${(rate(floorSeconds) / rate(baseSeconds)).toFixed(2)} (the most a platform that lands each upload durably over HTTP could reach here); imagelake / floor: ${(rate(platformSeconds) / rate(floorSeconds)).toFixed(2)}`,
);
// The spans still buffered go out before the process ends (their export is part of tracing's cost).
await stopTracing();
if (process.env.BENCH_REPORT)
  writeFileSync(
    process.env.BENCH_REPORT,
    JSON.stringify({
      traced,
      imagesPerSecond: rate(platformSeconds),
      // CPU of this process (every thread) per image: what tracing costs, even on a busy machine.
      cpuMsPerImage: (platformCpuSeconds * 1000) / files.length,
    }),
  );
