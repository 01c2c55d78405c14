// Resumable uploads against plain ones: 200 MB of real photos sent over tus (tus-js-client, 8 MiB
// chunks, as the CLI sends them) and by POST /v1/images, in the same run, 4 at a time each, taking
// turns eight files at a time, and the ratio of their throughputs (aim: 0.9 or better). Three runs;
// the spread of the ratio is printed, since the machine is shared and noisy.
//
//   node bench/tus.ts [--total-mb 200] [--runs 3] [--corpus ~/.cache/imagelake-corpus]
//
// The photos are the corpus's JPEG and PNG files of 1 MB and more, repeated until the total is
// reached. Only the api role runs (no worker), on the embedded PostgreSQL and the folder lake in a
// temporary data dir, so the numbers are the ingest path's alone.
import { readdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tus from 'tus-js-client';
import { BENCH_ADMIN, startApiServer } from './api-server.ts';

const { values } = parseArgs({
  options: { 'total-mb': { type: 'string' }, runs: { type: 'string' }, corpus: { type: 'string' } },
});
const TOTAL = Number(values['total-mb'] ?? 200) * 1e6;
const RUNS = Number(values.runs ?? 3);
const CORPUS = values.corpus ?? join(homedir(), '.cache', 'imagelake-corpus');
const CONCURRENCY = 4;
/** Files per turn: each way sends these, then the other does. */
const ROUND = 8;

const photos: Buffer[] = [];
for (const folder of ['jpeg', 'png']) {
  const names = await readdir(join(CORPUS, folder)).catch(() => [] as string[]);
  for (const name of names.sort()) {
    const bytes = await readFile(join(CORPUS, folder, name));
    if (bytes.length >= 1e6) photos.push(bytes);
  }
}
if (photos.length === 0) throw new Error(`No photos of 1 MB or more in ${CORPUS}/jpeg or /png`);
const files: Buffer[] = [];
for (let sum = 0, i = 0; sum < TOTAL; i++) {
  const photo = photos[i % photos.length]!;
  files.push(photo);
  sum += photo.length;
}
const bytes = files.reduce((s, f) => s + f.length, 0);

const { url, stop } = await startApiServer('tus', {
  IMAGELAKE_MAX_QUEUE_DEPTH: '1000000',
  IMAGELAKE_MAX_QUEUE_DEPTH_PER_CUSTOMER: '1000000',
});

async function customerKey(name: string): Promise<string> {
  const response = await fetch(`${url}/v1/customers`, {
    method: 'POST',
    headers: { authorization: `Bearer ${BENCH_ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  return ((await response.json()) as { apiKey: string }).apiKey;
}

async function post(key: string, file: Buffer): Promise<void> {
  const response = await fetch(`${url}/v1/images`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(file.buffer as ArrayBuffer, file.byteOffset, file.byteLength),
  });
  if (response.status !== 202) throw new Error(`POST answered ${response.status}: ${await response.text()}`);
  await response.arrayBuffer();
}

function viaTus(key: string, file: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    new tus.Upload(file, {
      endpoint: `${url}/v1/tus`,
      headers: { authorization: `Bearer ${key}` },
      metadata: { filename: 'photo', contentType: 'image/jpeg' },
      chunkSize: 8 * 1024 * 1024,
      retryDelays: null,
      onSuccess: () => resolve(),
      onError: reject,
    }).start();
  });
}

/** Sends the files, CONCURRENCY at a time; returns the seconds it took. */
async function timed(batch: Buffer[], send: (file: Buffer) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < batch.length) await send(batch[next++]!);
    }),
  );
  return (performance.now() - started) / 1000;
}

console.log(`${files.length} files, ${(bytes / 1e6).toFixed(0)} MB, ${CONCURRENCY} at a time, ${RUNS} runs`);
const ratios: number[] = [];
try {
  for (let run = 1; run <= RUNS; run++) {
    const key = await customerKey(`Bench ${run}`);
    // Both ways take turns, a few files at a time (and which goes first alternates), so the load of a
    // shared machine falls on both alike rather than on whichever ran while it was busy.
    const seconds = { post: 0, tus: 0 };
    const send = { post: (f: Buffer) => post(key, f), tus: (f: Buffer) => viaTus(key, f) };
    for (let start = 0, turn = run; start < files.length; start += ROUND, turn++) {
      const batch = files.slice(start, start + ROUND);
      const order = turn % 2 ? (['post', 'tus'] as const) : (['tus', 'post'] as const);
      for (const which of order) seconds[which] += await timed(batch, send[which]);
    }
    const result = { post: bytes / 1e6 / seconds.post, tus: bytes / 1e6 / seconds.tus };
    const ratio = result.tus / result.post;
    ratios.push(ratio);
    console.log(
      `run ${run}: POST /v1/images ${result.post.toFixed(1)} MB/s, tus ${result.tus.toFixed(1)} MB/s, ratio tus/POST ${ratio.toFixed(2)}`,
    );
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(
    `ratio tus/POST: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}, spread ${sorted[0]!.toFixed(2)}–${sorted.at(-1)!.toFixed(2)} (aim 0.9)`,
  );
} finally {
  await stop();
}
