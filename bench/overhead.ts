// The per-image overhead: tiny distinct images (64x64 PNGs) uploaded over HTTP, `--concurrency` at a
// time, to one `imagelake serve` on embedded defaults (every role, embedded PostgreSQL, folder lake),
// until every one is processed. Prints images/s landed (every 202 in) and finished (every job
// done), and the CPU milliseconds per image of the server's whole process tree, node and its
// PostgreSQL, read from /proc before and after.
//
//   npm run bench:overhead -- [--images 1000] [--concurrency 8] [--runs 3] [--profile DIR]
//
// The baseline, in the same run and taking turns with imagelake: a bare node:http server in a
// process of its own (bench/overhead-baseline.ts) that writes each upload to a file, fsyncs it and
// inserts one row in its own embedded PostgreSQL before its 202: the least a service that keeps
// uploads durably and lists them does, with no processing at all.
//
// Per image it also prints what goes in the capacity model: PostgreSQL statements (the server's
// PostgreSQL runs with pg_stat_statements), transactions, rows written, WAL bytes, lake objects
// written, and (in a separate sample under strace, which slows what it watches) fsync calls of node
// and of PostgreSQL (`--syscalls %file,%desc,fsync` counts every file call instead). With --profile DIR the server runs with node --cpu-prof and the top functions by
// self time are printed. Aim: at least 500 images/s, at most 3 ms of CPU per image.
//
// Each run also times the image work alone: the built-in steps (processing/pipeline.ts) on the same
// images in this process, as many at a time as there are cores, with no HTTP, lake, queue or
// catalog. It is the floor under the platform's CPU per image; what the platform spends above it is
// the per-image overhead proper.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import sharp from 'sharp';
import { runningEmbeddedUrl } from '../src/catalog/embedded.ts';
import { runPipeline } from '../src/processing/pipeline.ts';
import { cpuByKindBetween, namedCpuMs, processTree, threadCpuMs } from './process-tree.ts';
import { startServe, stopServe } from './serve-process.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '8' },
    runs: { type: 'string', default: '3' },
    profile: { type: 'string' },
    'strace-images': { type: 'string', default: '200' },
    // The system calls counted under strace, per image (e.g. %file,%desc,fsync for every file call).
    syscalls: { type: 'string', default: 'fsync,fdatasync,sync_file_range' },
  },
});
const IMAGES = Number(values.images);
const CONCURRENCY = Number(values.concurrency);
const RUNS = Number(values.runs);
const STRACE_IMAGES = Number(values['strace-images']);
const ADMIN = 'il_admin_bench-overhead-0123456789abcdefghijklmnopq';
// The benchmark's own queries name a column bench_overhead, so the statement counts leave them out
// (pg_stat_statements keeps no leading comment).
const MARK = '/* bench_overhead */';

/** `count` distinct 64x64 PNGs: random pixels, so no two are alike (nor near duplicates). */
async function tinyImages(count: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++)
    out.push(
      await sharp(randomBytes(64 * 64 * 3), { raw: { width: 64, height: 64, channels: 3 } })
        .png()
        .toBuffer(),
    );
  return out;
}

/** Every upload, CONCURRENCY at a time; resolves with the seconds until the last 202. */
async function send(url: string, headers: Record<string, string>, bodies: Buffer[]): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < bodies.length; i = next++) {
        const response = await fetch(url, { method: 'POST', headers, body: new Uint8Array(bodies[i]!) });
        const text = await response.text();
        if (response.status !== 202) throw new Error(`${url} answered ${response.status}: ${text}`);
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

/**
 * The built-in steps alone on these images, a core's worth at a time, in this process: the image
 * work's own CPU per image (every thread, libvips's included) and its rate.
 */
async function imageWorkAlone(bodies: Buffer[]): Promise<{ seconds: number; cpuMs: number }> {
  const task = (input: Buffer) => ({
    imageId: 'bench',
    customerId: 'bench',
    source: 'http',
    format: 'png',
    checksum: createHash('sha256').update(input).digest('hex'),
    input,
    limits: { maxPixels: 100_000_000, maxFrames: 1000 },
  });
  const cpu = process.cpuUsage();
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: availableParallelism() }, async () => {
      for (let i = next++; i < bodies.length; i = next++) await runPipeline(task(bodies[i]!));
    }),
  );
  const used = process.cpuUsage(cpu);
  return { seconds: (performance.now() - started) / 1000, cpuMs: (used.user + used.system) / 1000 };
}

function countFiles(dir: string): number {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
  } catch {
    return 0;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const spread = (xs: number[], digits = 0) =>
  `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;

// ---- The servers ----

const root = await mkdtemp(join(tmpdir(), 'imagelake-bench-overhead-'));
const dataDir = join(root, 'imagelake');
const profileArgs = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : [];

// A first start creates the cluster; pg_stat_statements is then preloaded for the measured one.
let serve = await startServe(dataDir, ADMIN);
await stopServe(serve.child);
appendFileSync(
  join(dataDir, 'postgres', 'postgresql.conf'),
  "\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.max = 1000\n",
);
serve = await startServe(dataDir, ADMIN, {}, profileArgs);
const db = new pg.Client({ connectionString: runningEmbeddedUrl(dataDir) });
await db.connect();
await db.query(`${MARK} create extension if not exists pg_stat_statements`);

const baselineChild: ChildProcess = spawn(
  process.execPath,
  [fileURLToPath(new URL('./overhead-baseline.ts', import.meta.url)), join(root, 'baseline')],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const baselineUrl = await new Promise<string>((resolve, reject) => {
  createInterface({ input: baselineChild.stdout! }).once('line', resolve);
  baselineChild.once('exit', () => reject(new Error('the baseline server exited')));
});

async function pgCounters() {
  const { rows } = await db.query(`${MARK}
    select xact_commit::bigint as commits, (tup_inserted + tup_updated + tup_deleted)::bigint as rows,
           pg_current_wal_lsn()::text as lsn,
           (select coalesce(sum(calls), 0) from pg_stat_statements where query not like '%bench_overhead%')::bigint as statements,
           1 as bench_overhead
    from pg_stat_database where datname = current_database()`);
  return rows[0] as { commits: string; rows: string; lsn: string; statements: string };
}

async function walBytes(from: string, to: string): Promise<number> {
  const { rows } = await db.query(
    `${MARK} select pg_wal_lsn_diff($1, $2)::bigint as n, 1 as bench_overhead`,
    [to, from],
  );
  return Number(rows[0].n);
}

/** The server's lake requests by operation, and bytes written, from its /metrics. */
async function lakeCounters(): Promise<Map<string, number>> {
  const text = await (await fetch(`${serve.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^imagelake_lake_requests_total\{operation="([^"]+)"\} (\S+)$/gm))
    out.set(m[1]!, Number(m[2]));
  const written = /^imagelake_lake_written_bytes_total(?:\{[^}]*\})? (\S+)$/m.exec(text);
  out.set('bytes written', Number(written?.[1] ?? 0));
  return out;
}

async function waitUntilDone(): Promise<void> {
  for (;;) {
    const { rows } = await db.query(`${MARK} select count(*)::int as n, 1 as bench_overhead from jobs`);
    if (rows[0].n === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

try {
  const customer = (await (
    await fetch(`${serve.url}/v1/customers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'overhead' }),
    })
  ).json()) as { apiKey: string };
  const upload = (bodies: Buffer[]) =>
    send(
      `${serve.url}/v1/images`,
      { authorization: `Bearer ${customer.apiKey}`, 'content-type': 'application/octet-stream' },
      bodies,
    );
  const bare = (bodies: Buffer[]) =>
    send(baselineUrl, { 'content-type': 'application/octet-stream' }, bodies);

  // Warm both up (JIT, pools, the first day's rows), then measure.
  const warm = await tinyImages(200);
  await upload(warm);
  await waitUntilDone();
  await bare(warm);
  await imageWorkAlone(warm);

  console.log(
    `${IMAGES} distinct 64x64 PNGs (${((await tinyImages(1))[0]!.length / 1000).toFixed(1)} KB each), ${CONCURRENCY} at a time, ${RUNS} runs`,
  );
  const baselinePid = baselineChild.pid!;
  const results: Array<Record<string, number>> = [];
  const lakeDir = join(dataDir, 'lake');
  for (let run = 0; run < RUNS; run++) {
    const bodies = await tinyImages(IMAGES);
    // The baseline first.
    const bareBefore = namedCpuMs(processTree(baselinePid));
    const bareSeconds = await bare(bodies);
    const bareCpu = cpuByKindBetween(bareBefore, namedCpuMs(processTree(baselinePid)));
    const alone = await imageWorkAlone(bodies);

    await db.query(`${MARK} select pg_stat_statements_reset() as bench_overhead`);
    const counters = await pgCounters();
    const files = countFiles(lakeDir);
    const lakeBefore = await lakeCounters();
    const before = namedCpuMs(processTree(serve.child.pid!));
    const threadsBefore = threadCpuMs(serve.child.pid!);
    const started = performance.now();
    const landedSeconds = await upload(bodies);
    await waitUntilDone();
    const finishedSeconds = (performance.now() - started) / 1000;
    const cpu = cpuByKindBetween(before, namedCpuMs(processTree(serve.child.pid!)));
    const threads = [...threadCpuMs(serve.child.pid!)]
      .map(([name, ms]) => [name, (ms - (threadsBefore.get(name) ?? 0)) / IMAGES] as const)
      .filter(([, ms]) => ms >= 0.05)
      .sort((a, b) => b[1] - a[1]);
    const after = await pgCounters();
    const lake = [...(await lakeCounters())].map(
      ([k, v]) => [k, (v - (lakeBefore.get(k) ?? 0)) / IMAGES] as const,
    );
    const r = {
      'landed/s': IMAGES / landedSeconds,
      'finished/s': IMAGES / finishedSeconds,
      'cpu ms/image': (cpu.node + cpu.postgres) / IMAGES,
      'node ms/image': cpu.node / IMAGES,
      'postgres ms/image': cpu.postgres / IMAGES,
      'statements/image': (Number(after.statements) - Number(counters.statements)) / IMAGES,
      'commits/image': (Number(after.commits) - Number(counters.commits)) / IMAGES,
      'rows written/image': (Number(after.rows) - Number(counters.rows)) / IMAGES,
      'WAL bytes/image': (await walBytes(counters.lsn, after.lsn)) / IMAGES,
      'lake objects/image': (countFiles(lakeDir) - files) / IMAGES,
      ...Object.fromEntries(lake.filter(([, n]) => n > 0).map(([op, n]) => [`lake ${op}/image`, n] as const)),
      'image work alone/s': IMAGES / alone.seconds,
      'image work alone cpu ms/image': alone.cpuMs / IMAGES,
      'above image work cpu ms/image': (cpu.node + cpu.postgres - alone.cpuMs) / IMAGES,
      'bare/s': IMAGES / bareSeconds,
      'bare cpu ms/image': (bareCpu.node + bareCpu.postgres) / IMAGES,
    } as Record<string, number>;
    results.push(r);
    console.log(
      `run ${run + 1}: landed ${r['landed/s']!.toFixed(0)}/s, finished ${r['finished/s']!.toFixed(0)}/s, ` +
        `${r['cpu ms/image']!.toFixed(2)} ms CPU/image (node ${r['node ms/image']!.toFixed(2)}, postgres ${r['postgres ms/image']!.toFixed(2)}); ` +
        `bare ${r['bare/s']!.toFixed(0)}/s, ${r['bare cpu ms/image']!.toFixed(2)} ms CPU/image`,
    );
    console.log(
      `  image work alone: ${r['image work alone/s']!.toFixed(0)}/s, ${r['image work alone cpu ms/image']!.toFixed(2)} ms CPU/image; ` +
        `imagelake above it: ${r['above image work cpu ms/image']!.toFixed(2)} ms CPU/image`,
    );
    console.log(
      `  node's threads, ms/image: ${threads.map(([n, ms]) => `${n} ${ms.toFixed(2)}`).join(', ')}`,
    );
  }

  const col = (k: string) => results.map((r) => r[k]!);
  console.log('\nmedian of the runs (spread min-max):');
  const table: Record<string, { median: string; spread: string }> = {};
  for (const k of Object.keys(results[0]!))
    table[k] = { median: median(col(k)).toFixed(2), spread: spread(col(k), 2) };
  console.table(table);
  const ratios = results.map((r) => r['finished/s']! / r['bare/s']!);
  const cpuRatios = results.map((r) => r['cpu ms/image']! / r['bare cpu ms/image']!);
  console.log(
    `imagelake finished / bare landed, images/s: ${median(ratios).toFixed(2)} (runs ${spread(ratios, 2)})`,
  );
  console.log(
    `CPU per image, imagelake / bare: ${median(cpuRatios).toFixed(2)} (runs ${spread(cpuRatios, 2)})`,
  );
  console.log(
    `aim: at least 500 images/s finished (median ${median(col('finished/s')).toFixed(0)}), at most 3 ms CPU/image (median ${median(col('cpu ms/image')).toFixed(2)})`,
  );
  console.log(
    `the image work alone: ${median(col('image work alone/s')).toFixed(0)} images/s at ${median(col('image work alone cpu ms/image')).toFixed(2)} ms CPU/image (median); ` +
      `imagelake above it: ${median(col('above image work cpu ms/image')).toFixed(2)} ms CPU/image`,
  );
  // The floor under any platform that lands an image durably with a catalog row (the baseline) and
  // does the same image work: their CPU per image added, against the aim's 3 ms.
  const floors = results.map((r) => r['bare cpu ms/image']! + r['image work alone cpu ms/image']!);
  console.log(
    `floor, the bare baseline's landing plus the image work alone: ${median(floors).toFixed(2)} ms CPU/image (runs ${spread(floors, 2)}; aim at most 3); imagelake's CPU per image ${median(results.map((r, i) => r['cpu ms/image']! / floors[i]!)).toFixed(2)} times the floor's`,
  );

  // Where PostgreSQL's time went in the last run: its statements by total time.
  const { rows: top } = await db.query(
    `${MARK} select calls, round(total_exec_time::numeric, 1) as ms, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as query
     from pg_stat_statements where query not like '%bench_overhead%' order by total_exec_time desc limit 20`,
  );
  console.log(`\nPostgreSQL statements of the last run (${IMAGES} images), by total time:`);
  for (const s of top)
    console.log(
      `${(Number(s.calls) / IMAGES).toFixed(2).padStart(6)}/image ${String(s.ms).padStart(8)} ms  ${s.query}`,
    );

  // fsyncs: a sample under strace (node's and PostgreSQL's), not timed.
  if (STRACE_IMAGES > 0) {
    const out = join(root, 'strace.txt');
    const pids = [...processTree(serve.child.pid!)].flatMap((pid) => {
      try {
        return readdirSync(`/proc/${pid}/task`);
      } catch {
        return [];
      }
    });
    const strace = spawn(
      'strace',
      ['-f', '-c', '-o', out, '-e', `trace=${values.syscalls}`, ...pids.flatMap((p) => ['-p', p])],
      { stdio: 'ignore' },
    );
    await new Promise((r) => setTimeout(r, 1000));
    const bodies = await tinyImages(STRACE_IMAGES);
    await upload(bodies);
    await waitUntilDone();
    const exited = new Promise((r) => strace.once('exit', r));
    strace.kill('SIGINT');
    await exited;
    // strace -c: % time, seconds, usecs/call, calls, [errors], syscall; then a total line.
    const calls = readFileSync(out, 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => /^\d/.test(f[0] ?? '') && f.length >= 5 && f.at(-1) !== 'total');
    console.log(`\nsystem calls per image (strace over ${STRACE_IMAGES} images, node and PostgreSQL):`);
    for (const f of calls) console.log(`  ${f.at(-1)}: ${(Number(f[3]) / STRACE_IMAGES).toFixed(2)}`);
  }
} finally {
  await db.end().catch(() => {});
  await stopServe(serve.child);
  await stopServe(baselineChild);
  await rm(root, { recursive: true, force: true });
}

if (values.profile) {
  // Self time by function over every profile written (the main thread and each worker thread).
  const self = new Map<string, number>();
  let total = 0;
  for (const file of readdirSync(values.profile).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(values.profile, file), 'utf8')) as {
      nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
      samples: number[];
      timeDeltas: number[];
    };
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) => {
      const frame = byId.get(id)!.callFrame;
      const name = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${frame.lineNumber + 1}`;
      const us = profile.timeDeltas[i] ?? 0;
      self.set(name, (self.get(name) ?? 0) + us);
      total += us;
    });
  }
  console.log(`\nnode's CPU profile, top functions by self time (${(total / 1e6).toFixed(1)} s sampled):`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30))
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
}
