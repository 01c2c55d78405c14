// Per-image overhead of each processor kind (module, command, url) against calling the same
// function directly, measured in the same run.
//
//   npm run bench:processors -- [FOLDER] [--images N] [--sample N] [--quality N] [--rounds N]
//                               [--python PATH] [--skip-python] [--only small,corpus,quality] [--json]
//
// 1. A trivial processor (answers {ok: true}, reads nothing) on N small JPEGs, then on a sample of
//    the corpus's originals (0.1 to 16 MB) to show what shipping big originals costs. Kinds: a module
//    (worker threads), a Node command (stdio frames), a Node HTTP service in a child process, and the
//    same function with the Python SDK as a command and with --http. The Node kinds are compared with
//    the function called in this process; the Python ones with the function called in a Python loop
//    (bench/processors/direct.py times it inside Python).
// 2. The Python example (examples/processors/python/quality.py) on a sample of corpus originals as a
//    command processor, against its process() called directly in Python on the same files.
//
// Every kind runs through Processors (src/processing/processors/chain.ts), as the worker runs it:
// request building, the host, the check against the declared fields. Inputs go through the built-in
// pipeline first (outside the clock), so a module gets the decoded pixels it would get for real.
// "ms/image" is wall time over images (at concurrency 2, two in flight); "overhead" is that minus the
// direct call's; "direct/kind" is the direct call's throughput over the kind's (1.00: no overhead).
// "cpu ms" splits where the time is spent: this process (the platform's side, and a module's worker
// threads) and child processes (the command or the HTTP server, read from /proc), per image. On a
// busy machine wall times wander; the CPU figures much less.
//
// FOLDER defaults to the corpus from ../shared/corpus/fetch.sh; the Python venv is the one
// `scripts/services/python ensure` builds. Without either, the parts that need it are skipped.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import pino from 'pino';
import sharp from 'sharp';
import { sniff } from '../src/ingest/sniff.ts';
import { runPipeline } from '../src/processing/pipeline.ts';
import { type ImageInfo, Processors } from '../src/processing/processors/chain.ts';
import type { ProcessorContext, ProcessorImage } from '../src/processing/processors/contract.ts';
import type { HostInput } from '../src/processing/processors/host.ts';
import { parseSpecs } from '../src/processing/processors/spec.ts';
import trivialModule from './processors/trivial.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    images: { type: 'string', default: '500' },
    sample: { type: 'string', default: '20' },
    quality: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    python: { type: 'string' },
    'skip-python': { type: 'boolean', default: false },
    only: { type: 'string', default: 'small,corpus,quality' },
    json: { type: 'boolean', default: false },
  },
});
const SMALL = Number(values.images);
const SAMPLE = Number(values.sample);
const QUALITY = Number(values.quality);
const ROUNDS = Math.max(1, Number(values.rounds));
const CONCURRENCY = [1, 2];
const JSON_OUT = values.json;
const ONLY = new Set(values.only.split(','));

const root = fileURLToPath(new URL('..', import.meta.url));
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const say = (line: string) => process.stderr.write(`${line}\n`);
const skipped: Array<{ part: string; why: string }> = [];
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------------
// Inputs: images as the runner hands them to the processors.

interface Item {
  path: string;
  info: ImageInfo;
  input: HostInput & { original: Buffer };
  /** What a module's process() gets, for the in-process direct call. */
  image: ProcessorImage;
  context: ProcessorContext;
}

async function prepare(path: string, bytes: Buffer, index: number): Promise<Item> {
  const format = sniff(bytes.subarray(0, 64));
  if (!format) throw new Error(`${path} is not an image`);
  const id = `00000000-0000-4000-8000-${String(index).padStart(12, '0')}`;
  const result = await runPipeline({
    imageId: id,
    customerId: '00000000-0000-4000-8000-000000000000',
    source: 'bench',
    format,
    checksum: createHash('sha256').update(bytes).digest('hex'),
    input: bytes,
    limits: { maxPixels: 200_000_000, maxFrames: 100 },
    keepDecoded: true,
  });
  const decoded = result.decoded!;
  const preview = result.renditions.find((r) => r.name === 'preview')!.data;
  return {
    path,
    info: { id, customerId: 'bench', source: 'bench', format, metadata: result.metadata },
    input: { original: bytes, preview: Buffer.from(preview), decoded, metadata: result.metadata },
    image: {
      bytes,
      decoded,
      sharp: () =>
        sharp(decoded.data, {
          raw: { width: decoded.width, height: decoded.height, channels: decoded.channels },
        }),
      metadata: result.metadata,
    },
    context: { imageId: id, customerId: 'bench', source: 'bench', previous: {}, config: {} },
  };
}

/** Small photo-like JPEGs drawn on the spot (distinct sizes and colours), written to `dir`. */
async function smallImages(dir: string, distinct: number): Promise<Item[]> {
  const items: Item[] = [];
  for (let i = 0; i < distinct; i++) {
    const width = 160 + ((i * 37) % 480);
    const height = Math.round(width * 0.75);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
      <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
        <stop offset="0" stop-color="rgb(${(i * 53) % 255},120,200)"/>
        <stop offset="1" stop-color="rgb(250,${(i * 97) % 255},40)"/></linearGradient></defs>
      <rect width="100%" height="100%" fill="url(#g)"/>
      <circle cx="${width * 0.3}" cy="${height * 0.4}" r="${height * 0.2}" fill="white"/></svg>`;
    const bytes = await sharp(Buffer.from(svg)).jpeg({ quality: 85 }).toBuffer();
    const path = join(dir, `small-${i}.jpg`);
    writeFileSync(path, bytes);
    items.push(await prepare(path, bytes, i));
  }
  return items;
}

function listImages(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listImages(path));
    else if (/\.(jpe?g|png|webp|gif|avif|tiff?)$/i.test(entry.name)) out.push(path);
  }
  return out.sort();
}

function corpus(): string | undefined {
  if (positionals[0]) return positionals[0];
  const script = new URL('../../shared/corpus/fetch.sh', import.meta.url).pathname;
  if (!existsSync(script)) return undefined;
  try {
    return execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return undefined;
  }
}

/** `count` files spread evenly over the folder's size range, smallest to largest. */
function spread(files: string[], count: number): string[] {
  const bySize = files.map((f) => ({ f, size: statSync(f).size })).sort((a, b) => a.size - b.size);
  if (bySize.length <= count) return bySize.map((x) => x.f);
  return Array.from(
    { length: count },
    (_, i) => bySize[Math.round((i * (bySize.length - 1)) / Math.max(1, count - 1))]!.f,
  );
}

function python(): string | undefined {
  if (values['skip-python']) {
    skipped.push({ part: 'python', why: '--skip-python' });
    return undefined;
  }
  const exe =
    values.python ??
    execFileSync(join(root, 'scripts/services/python'), ['path'], { encoding: 'utf8' }).trim();
  const fix = 'run `scripts/services/python ensure` (or pass --python PATH)';
  if (!existsSync(exe)) {
    skipped.push({ part: 'python', why: `no Python venv at ${exe}: ${fix}` });
    return undefined;
  }
  try {
    execFileSync(exe, ['-c', 'import imagelake, PIL, numpy'], { stdio: 'pipe' });
  } catch (error) {
    const why = String((error as { stderr?: Buffer }).stderr ?? error)
      .trim()
      .split('\n')
      .pop();
    skipped.push({ part: 'python', why: `${exe} lacks the SDK, Pillow or numpy (${why}): ${fix}` });
    return undefined;
  }
  return exe;
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/** Runs `work` on every item with `concurrency` in flight; seconds of wall time. */
async function timed(
  items: Item[],
  concurrency: number,
  work: (item: Item) => Promise<unknown>,
  tick: () => void,
): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        await work(items[next++]!);
        tick();
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

/** Runs one image through the processors and insists it succeeded: a failure would time nothing. */
async function runChecked(processors: Processors, item: Item): Promise<void> {
  const outcome = await processors.run(item.info, item.input);
  const [name, error] = Object.entries(outcome.errors)[0] ?? [];
  if (error) throw new Error(`${name} failed on ${item.path}: ${error.code}: ${error.message}`);
}

function open(entry: Record<string, unknown>, concurrency: number): Promise<Processors> {
  const specs = parseSpecs(
    [{ ...entry, concurrency }],
    root,
    { timeoutMs: 300_000, concurrency },
    'bench/processors.ts',
  );
  return Processors.open(specs, { log, source: 'bench/processors.ts' });
}

/**
 * The same function called in Python, timed there, in `concurrency` processes started together.
 * Static: each process loops over its share (for calls that all cost the same). Pull: the processes
 * take the next image from one queue, as a command processor's processes do (for calls whose cost
 * varies: a static split of 20 photos ends with one process idle while the other finishes).
 */
async function pythonDirect(
  exe: string,
  script: string,
  paths: string[],
  concurrency: number,
  dir: string,
  mode: 'static' | 'pull' = 'static',
): Promise<{ seconds: number; cpuSeconds: number }> {
  const shares =
    mode === 'pull'
      ? Array.from({ length: Math.min(concurrency, paths.length) }, () => paths)
      : Array.from({ length: concurrency }, (_, i) => paths.filter((_, j) => j % concurrency === i)).filter(
          (share) => share.length,
        );
  let next = 0;
  const runs = shares.map((share, i) => {
    const listing = join(dir, `direct-${i}.txt`);
    writeFileSync(listing, `${share.join('\n')}\n`);
    const child = spawn(
      exe,
      [here('./processors/direct.py'), script, listing, mode === 'pull' ? '--pull' : '--wait'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    children.add(child);
    const feed = () => {
      if (next < paths.length) child.stdin!.write(`${next++}\n`);
      else child.stdin!.end();
    };
    let pending = '';
    let result = '';
    let err = '';
    let onReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => (onReady = resolve));
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString()).split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line === 'ready') onReady();
        else if (line === 'next') feed();
        else result += line;
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const done = new Promise<{ seconds: number; cpuSeconds: number }>((resolve, reject) =>
      child.on('exit', (code) => {
        children.delete(child);
        if (code !== 0) reject(new Error(`direct.py exited ${code}: ${err.trim().split('\n').pop()}`));
        else resolve(JSON.parse(result + pending));
      }),
    );
    done.catch(() => onReady());
    return { child, ready, done, go: mode === 'pull' ? feed : () => child.stdin!.end('go\n') };
  });
  await Promise.all(runs.map((r) => r.ready));
  for (const r of runs) r.go();
  const results = await Promise.all(runs.map((r) => r.done));
  return {
    seconds: Math.max(...results.map((r) => r.seconds)),
    cpuSeconds: results.reduce((sum, r) => sum + r.cpuSeconds, 0),
  };
}

/** A child process serving HTTP; resolves with its port once it listens. */
function serve(command: string[], portFrom: RegExp, stream: 'stdout' | 'stderr'): Promise<{ url: string }> {
  const [exe, ...args] = command;
  const child = spawn(exe!, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: root });
  children.add(child);
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${command.join(' ')} did not listen: ${seen}`)), 30_000);
    child[stream]!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const port = portFrom.exec(seen)?.[1];
      if (port) {
        clearTimeout(timer);
        resolve({ url: `http://127.0.0.1:${port}/` });
      }
    });
    // Drained, so a chatty server never blocks on a full pipe.
    child[stream === 'stdout' ? 'stderr' : 'stdout']!.resume();
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command.join(' ')} exited ${code}: ${seen}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The parts.

type Lang = 'node' | 'python';
type Kind = 'direct' | 'module' | 'command' | 'url';

interface Row {
  lang: Lang;
  kind: Kind;
  label: string;
  /** By concurrency: per-image milliseconds of every round. */
  rounds: Record<number, number[]>;
  /** By concurrency: per-image CPU milliseconds of every round, in this process and in child processes. */
  cpu: Record<number, Array<{ here: number; children: number }>>;
}

interface Part {
  id: string;
  title: string;
  images: number;
  megabytes: number;
  rows: Row[];
}

interface Contender {
  row: Row;
  /** Opened once per concurrency; undefined for the direct calls. */
  entry?: Record<string, unknown>;
  direct?: (concurrency: number) => Promise<{ seconds: number; cpuSeconds?: number }>;
}

function bar(label: string, total: number) {
  const b = new cliProgress.SingleBar(
    { format: `${label.padEnd(34)} [{bar}] {value}/{total} {what}`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  b.start(total, 0, { what: '' });
  if (!process.stderr.isTTY) say(`${label}: ${total} runs`);
  return b;
}

async function measure(
  part: Part,
  items: Item[],
  contenders: Contender[],
  rounds: number,
  warmPerSlot = 4,
): Promise<void> {
  for (const c of contenders) part.rows.push(c.row);
  for (const concurrency of CONCURRENCY) {
    const progress = bar(`${part.id}, concurrency ${concurrency}`, rounds * contenders.length * items.length);
    const opened = new Map<Contender, Processors>();
    try {
      for (const c of contenders) {
        if (!c.entry) continue;
        progress.update({ what: `starting ${c.row.label}` });
        const processors = await open(c.entry, concurrency);
        opened.set(c, processors);
        // Warm: every thread or process started, JIT and connections ready.
        const warm = items.slice(0, Math.min(items.length, warmPerSlot * concurrency));
        await timed(
          warm,
          concurrency,
          (item) => runChecked(processors, item),
          () => {},
        );
      }
      for (let round = 0; round < rounds; round++) {
        for (const c of contenders) {
          progress.update({ what: `${c.row.label}, round ${round + 1}/${rounds}` });
          let seconds: number;
          const processors = opened.get(c);
          const before = cpuNow();
          let cpu: { here: number; children: number } | undefined;
          if (processors) {
            seconds = await timed(
              items,
              concurrency,
              (item) => runChecked(processors, item),
              () => progress.increment(),
            );
          } else {
            const result = await c.direct!(concurrency);
            seconds = result.seconds;
            // Timed inside Python: its own loop's CPU, not the spawning.
            if (result.cpuSeconds !== undefined) cpu = { here: 0, children: result.cpuSeconds };
            progress.increment(items.length);
          }
          const after = cpuNow();
          cpu ??= { here: after.here - before.here, children: after.children - before.children };
          const perImage = (s: number) => (s * 1000) / items.length;
          c.row.rounds[concurrency] ??= [];
          c.row.rounds[concurrency].push(perImage(seconds));
          c.row.cpu[concurrency] ??= [];
          c.row.cpu[concurrency].push({ here: perImage(cpu.here), children: perImage(cpu.children) });
        }
      }
    } finally {
      progress.stop();
      await Promise.all([...opened.values()].map((p) => p.close()));
    }
  }
}

function trivialContenders(
  items: Item[],
  py: string | undefined,
  urls: { node: string; python?: string },
  dir: string,
): Contender[] {
  const declared = { version: '1.0.0', fields: { ok: 'boolean' }, retries: 0 };
  const row = (lang: Lang, kind: Kind, label: string): Row => ({ lang, kind, label, rounds: {}, cpu: {} });
  const list: Contender[] = [
    {
      row: row('node', 'direct', 'direct: Node, in-process'),
      direct: async (concurrency) => {
        let checked = 0;
        const seconds = await timed(
          items,
          concurrency,
          async (item) => {
            const out = (await trivialModule.process(item.image, item.context)) as { ok?: boolean };
            if (out.ok) checked++;
          },
          () => {},
        );
        if (checked !== items.length) throw new Error('the trivial function did not answer ok');
        return { seconds };
      },
    },
    {
      row: row('node', 'module', 'module: worker threads'),
      entry: { name: 'trivial', module: './bench/processors/trivial.ts' },
    },
    {
      row: row('node', 'command', 'command: Node script, stdio'),
      entry: { name: 'trivial', command: [process.execPath, './bench/processors/trivial-command.ts'] },
    },
    {
      row: row('node', 'url', 'url: Node http, child process'),
      entry: { name: 'trivial', url: urls.node, ...declared },
    },
  ];
  if (py) {
    const script = here('./processors/trivial.py');
    const paths = items.map((i) => i.path);
    list.push(
      {
        row: row('python', 'direct', 'direct: Python loop'),
        direct: (concurrency) => pythonDirect(py, script, paths, concurrency, dir),
      },
      {
        row: row('python', 'command', 'command: Python SDK, stdio'),
        entry: { name: 'trivial', command: [py, './bench/processors/trivial.py'] },
      },
      {
        row: row('python', 'url', 'url: Python SDK --http'),
        entry: { name: 'trivial', url: urls.python, ...declared },
      },
    );
  }
  return list;
}

/** The clock ticks /proc counts CPU time in. */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU seconds used so far by this process (every thread: module workers included) and by its live
 * child processes (commands, HTTP servers), from /proc. Where /proc is missing, children count 0.
 */
function cpuNow(): { here: number; children: number } {
  const usage = process.cpuUsage();
  let children = 0;
  try {
    for (const task of readdirSync(`/proc/${process.pid}/task`)) {
      const pids = readFileSync(`/proc/${process.pid}/task/${task}/children`, 'utf8').split(' ');
      for (const pid of pids.filter(Boolean)) {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
          const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          children += (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
        } catch {}
      }
    }
  } catch {}
  return { here: (usage.user + usage.system) / 1e6, children };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function summarize(part: Part) {
  return {
    ...part,
    rows: part.rows.map((row) => {
      const base = part.rows.find((r) => r.lang === row.lang && r.kind === 'direct');
      const by: Record<string, unknown> = {};
      for (const c of CONCURRENCY) {
        const ms = row.rounds[c];
        const baseMs = base?.rounds[c];
        if (!ms?.length) continue;
        const perImageMs = median(ms);
        const directMs = baseMs?.length ? median(baseMs) : undefined;
        const cpu = row.cpu[c] ?? [];
        by[c] = {
          perImageMs,
          roundsMs: ms,
          overheadMs: directMs === undefined ? undefined : perImageMs - directMs,
          directOverKind: directMs === undefined ? undefined : perImageMs / directMs,
          cpuMs: {
            here: median(cpu.map((x) => x.here)),
            children: median(cpu.map((x) => x.children)),
          },
        };
      }
      return { lang: row.lang, kind: row.kind, label: row.label, concurrency: by };
    }),
  };
}

function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (Math.abs(ms) >= 100) return ms.toFixed(0);
  if (Math.abs(ms) >= 10) return ms.toFixed(1);
  if (Math.abs(ms) >= 0.1) return ms.toFixed(2);
  return ms.toFixed(4);
}

function fmtRatio(r: number | undefined): string {
  if (r === undefined) return '-';
  if (r >= 100) return `${Math.round(r).toLocaleString('en')}x`;
  return `${r.toFixed(2)}x`;
}

function printTable(part: ReturnType<typeof summarize>): void {
  const cpuAt = CONCURRENCY[0]!;
  const head = [
    '',
    ...CONCURRENCY.flatMap((c) => [`c=${c} ms/image`, 'overhead ms', 'direct/kind']),
    `cpu ms (c=${cpuAt}): here`,
    'children',
  ];
  const lines = part.rows.map((row) => [
    row.label,
    ...CONCURRENCY.flatMap((c) => {
      const m = row.concurrency[c] as
        | { perImageMs: number; overheadMs?: number; directOverKind?: number }
        | undefined;
      if (!m) return ['-', '-', '-'];
      const direct = row.kind === 'direct';
      return [
        fmtMs(m.perImageMs),
        direct ? '' : fmtMs(m.overheadMs),
        direct ? '' : fmtRatio(m.directOverKind),
      ];
    }),
    ...(() => {
      const cpu = (row.concurrency[cpuAt] as { cpuMs?: { here: number; children: number } } | undefined)
        ?.cpuMs;
      return cpu ? [fmtMs(cpu.here), fmtMs(cpu.children)] : ['-', '-'];
    })(),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  console.log(`\n${part.title}`);
  console.log(fmt(head));
  for (const l of lines) console.log(fmt(l));
}

// ---------------------------------------------------------------------------------------------

const cores = availableParallelism();
const loadAtStart = loadavg()[0]!;
const dir = mkdtempSync(join(tmpdir(), 'imagelake-bench-processors-'));
const parts: Part[] = [];
try {
  const py = python();
  const folder = corpus();
  const files = folder && existsSync(folder) ? listImages(folder) : [];
  if (!files.length)
    skipped.push({
      part: 'corpus',
      why: `no corpus${folder ? ` in ${folder}` : ''}: run ../shared/corpus/fetch.sh (needs apt-get and dpkg) or pass a folder of images`,
    });

  say(
    `${cores} cores, Node ${process.version}${py ? `, ${execFileSync(py, ['--version'], { encoding: 'utf8' }).trim()}` : ''}`,
  );
  say('preparing inputs through the built-in pipeline...');
  const distinct = await smallImages(dir, Math.min(SMALL, 20));
  const small = Array.from({ length: SMALL }, (_, i) => distinct[i % distinct.length]!);
  const sample = await Promise.all(
    spread(ONLY.has('corpus') ? files : [], SAMPLE).map(async (f, i) =>
      prepare(f, readFileSync(f), 1000 + i),
    ),
  );
  const qualitySample = spread(files, QUALITY);

  const urls: { node: string; python?: string } = {
    node: (await serve([process.execPath, here('./processors/trivial-http.ts')], /"port":\s*(\d+)/, 'stdout'))
      .url,
  };
  if (py)
    urls.python = (
      await serve([py, here('./processors/trivial.py'), '--http', '0'], /http:\/\/[^:]+:(\d+)\//, 'stderr')
    ).url;

  const mb = (items: Item[]) => items.reduce((s, i) => s + i.input.original.length, 0) / 1e6;
  /** One part; if it fails (a venv rebuilt under it, say), it is reported and the others still run. */
  const attempt = async (part: Part, run: () => Promise<void>) => {
    try {
      await run();
      parts.push(part);
    } catch (error) {
      say(`${part.id} failed: ${(error as Error).message}`);
      skipped.push({
        part: part.id,
        why: `failed: ${(error as Error).message.split('\n').slice(0, 6).join(' ')}`,
      });
    }
  };

  const smallPart: Part = {
    id: 'trivial, small images',
    title: `Trivial processor on ${SMALL} small JPEGs (${distinct.length} distinct, ${Math.round((mb(distinct) / distinct.length) * 1000)} KB on average), median of ${ROUNDS} rounds`,
    images: SMALL,
    megabytes: mb(small),
    rows: [],
  };
  if (ONLY.has('small'))
    await attempt(smallPart, () =>
      measure(smallPart, small, trivialContenders(small, py, urls, dir), ROUNDS, 10),
    );

  if (sample.length && ONLY.has('corpus')) {
    const sizes = sample.map((s) => s.input.original.length / 1e6);
    const samplePart: Part = {
      id: 'trivial, corpus originals',
      title: `Trivial processor on ${sample.length} corpus originals (${(mb(sample) / sample.length).toFixed(1)} MB on average, ${Math.min(...sizes).toFixed(1)} to ${Math.max(...sizes).toFixed(1)} MB), median of ${ROUNDS} rounds`,
      images: sample.length,
      megabytes: mb(sample),
      rows: [],
    };
    await attempt(samplePart, () =>
      measure(samplePart, sample, trivialContenders(sample, py, urls, dir), ROUNDS),
    );
  }

  const qualityScript = join(root, 'examples/processors/python/quality.py');
  if (!ONLY.has('quality')) skipped.push({ part: 'quality.py', why: 'not in --only' });
  else if (!files.length) skipped.push({ part: 'quality.py', why: 'needs the corpus' });
  else if (!py) skipped.push({ part: 'quality.py', why: 'needs the Python venv' });
  else if (!existsSync(qualityScript))
    skipped.push({ part: 'quality.py', why: `${relative(root, qualityScript)} is missing` });
  else {
    const items = await Promise.all(qualitySample.map(async (f, i) => prepare(f, readFileSync(f), 2000 + i)));
    const qualityPart: Part = {
      id: 'quality.py, corpus originals',
      title: `Python example quality.py on ${items.length} corpus originals (${(mb(items) / items.length).toFixed(1)} MB on average), median of ${ROUNDS} rounds`,
      images: items.length,
      megabytes: mb(items),
      rows: [],
    };
    const paths = items.map((i) => i.path);
    await attempt(qualityPart, () =>
      measure(
        qualityPart,
        items,
        [
          {
            row: { lang: 'python', kind: 'direct', label: 'direct: Python loop', rounds: {}, cpu: {} },
            direct: (concurrency) => pythonDirect(py, qualityScript, paths, concurrency, dir, 'pull'),
          },
          {
            row: {
              lang: 'python',
              kind: 'command',
              label: 'command: Python SDK, stdio',
              rounds: {},
              cpu: {},
            },
            entry: { name: 'quality', command: [py, qualityScript] },
          },
        ],
        ROUNDS,
        1,
      ),
    );
  }
} finally {
  for (const child of children) child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}

const summaries = parts.map(summarize);
const load = { atStart: loadAtStart, atEnd: loadavg()[0]! };
if (JSON_OUT) {
  console.log(
    JSON.stringify(
      {
        cores,
        node: process.version,
        concurrency: CONCURRENCY,
        loadAverage: load,
        parts: summaries,
        skipped,
      },
      null,
      2,
    ),
  );
} else {
  console.log(
    [
      '',
      `${cores} cores; 1-minute load average ${load.atStart.toFixed(1)} at the start, ${load.atEnd.toFixed(1)} at the end.`,
      "ms/image: wall time over images (at c=2, two in flight). overhead: minus the direct call's ms/image (Node",
      "rows against the Node direct call, Python rows against the Python one). direct/kind: the direct call's",
      "throughput over the kind's (1.00x: no overhead). cpu ms: CPU per image in this process (the platform side,",
      'and module worker threads) and in child processes (the command or the HTTP server; the Python loop).',
    ].join('\n'),
  );
  for (const s of summaries) printTable(s);
  for (const s of skipped) console.log(`\nskipped ${s.part}: ${s.why}`);
}
