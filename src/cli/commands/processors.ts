import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pino from 'pino';
import type { Config } from '../../config/config.ts';
import { parseDuration } from '../../config/duration.ts';
import { AppError } from '../../errors.ts';
import { sniff } from '../../ingest/sniff.ts';
import { runPipeline } from '../../processing/pipeline.ts';
import { Processors } from '../../processing/processors/chain.ts';
import { ProcessorConfigError, type ProcessorSpec, parseSpecs } from '../../processing/processors/spec.ts';
import type { ApiClient } from '../client.ts';
import { progressBar } from '../progress.ts';

/**
 * The python a `.py` processor runs with: the interpreter the processors file runs that same file
 * with (so the test sees the libraries the platform's runs see), IMAGELAKE_PROCESSOR_PYTHON, the
 * active virtualenv, the project's own (scripts/services/python), or python3.
 */
function python(config: Config, script: string): string {
  const target = resolve(script);
  for (const p of config.processors) {
    if (p.kind !== 'command' || p.command.length < 2) continue;
    if (p.command.slice(1).some((arg) => resolve(p.cwd, arg) === target)) return p.command[0]!;
  }
  if (process.env.IMAGELAKE_PROCESSOR_PYTHON) return process.env.IMAGELAKE_PROCESSOR_PYTHON;
  if (process.env.VIRTUAL_ENV) return join(process.env.VIRTUAL_ENV, 'bin/python');
  const venv = resolve('.cache/python/bin/python');
  return existsSync(venv) ? venv : 'python3';
}

/** What `processors test PATH` means: a configured name, a module, a Python file, a URL or an executable. */
function specFor(config: Config, target: string, flags: TestFlags): ProcessorSpec {
  const configured = config.processors.find((p) => p.name === target);
  if (configured) return { ...configured, required: true, after: [] };
  const entry: Record<string, unknown> = { name: flags.name ?? 'test' };
  if (/^https?:\/\//.test(target)) Object.assign(entry, { url: target, version: flags.version ?? 'unknown' });
  else if (/\.(ts|js|mjs)$/.test(target)) entry.module = target;
  else if (target.endsWith('.py')) entry.command = [python(config, target), target];
  else entry.command = [target];
  if (flags.fields) entry.fields = JSON.parse(flags.fields);
  if (flags.config) entry.config = JSON.parse(flags.config);
  if (flags.timeout) entry.timeout = flags.timeout;
  const [spec] = parseSpecs([entry], process.cwd(), { timeoutMs: 60_000, concurrency: 1 }, target);
  // The name is the processor's own unless given: a module or command says it in its hello.
  return flags.name ? spec! : { ...spec!, name: '' };
}

interface TestFlags {
  name?: string;
  version?: string;
  fields?: string;
  config?: string;
  timeout?: string;
  out?: string;
}

/** `imagelake processors test PATH IMAGE`: one processor, one image, the result printed. */
export async function testProcessor(
  config: Config,
  target: string,
  imagePath: string,
  flags: TestFlags,
): Promise<number> {
  // The processor's own stderr, as plain lines: this is where an engineer reads their prints.
  const log = pino(
    { level: 'info' },
    {
      write(line: string) {
        const { msg, processor } = JSON.parse(line) as { msg: string; processor?: string };
        process.stderr.write(`[${processor || target}] ${msg}\n`);
      },
    },
  );
  let spec: ProcessorSpec;
  try {
    spec = specFor(config, target, flags);
  } catch (error) {
    console.error(
      `imagelake: ${error instanceof ProcessorConfigError ? error.problems.join('; ') : (error as Error).message}`,
    );
    return 2;
  }
  const bytes = readFileSync(imagePath);
  let processors: Processors;
  try {
    processors = await Processors.open([spec], { log, source: target });
  } catch (error) {
    console.error(
      `imagelake: ${error instanceof ProcessorConfigError ? error.problems.join('\n  ') : (error as Error).message}`,
    );
    return 2;
  }
  try {
    const started = performance.now();
    const built = await runPipeline({
      imageId: '00000000-0000-4000-8000-000000000000',
      customerId: '00000000-0000-4000-8000-000000000000',
      source: 'test',
      format: sniff(bytes) ?? 'unknown',
      checksum: createHash('sha256').update(bytes).digest('hex'),
      input: bytes,
      limits: { maxPixels: config.limits.maxPixels, maxFrames: config.limits.maxFrames },
      keepDecoded: true,
    }).catch((error) => {
      throw error instanceof AppError ? new Error(`${error.code}: ${error.message}`) : error;
    });
    const builtMs = performance.now() - started;
    const preview = built.renditions.find((r) => r.name === 'preview')!.data;
    const p = processors.list[0]!;
    const out = await processors.run(
      {
        id: 'test',
        customerId: 'test',
        source: 'test',
        format: built.metadata.format,
        metadata: built.metadata,
      },
      { original: bytes, preview: Buffer.from(preview), decoded: built.decoded, metadata: built.metadata },
    );
    const saved = out.images.map((i) => {
      const file = flags.out ? join(flags.out, `${p.name}.${i.name}.${i.format}`) : undefined;
      if (file) {
        mkdirSync(flags.out!, { recursive: true });
        writeFileSync(file, i.data);
      }
      return { name: i.name, format: i.format, bytes: i.data.length, ...(file ? { savedTo: file } : {}) };
    });
    const error = out.errors[p.name];
    console.log(
      JSON.stringify(
        {
          processor: processors.describe()[0],
          ok: !error,
          ...(error ? { error } : {}),
          metadata: out.outputs[p.name] ?? null,
          labels: out.labels[p.name] ?? [],
          images: saved,
          timings: { builtInStepsMs: Math.round(builtMs), processorMs: out.timings[p.name] },
        },
        null,
        2,
      ),
    );
    return error ? 1 : 0;
  } finally {
    await processors.close();
  }
}

export interface ReprocessFlags {
  processor?: string;
  since?: string;
  customer?: string;
  force?: boolean;
  detach?: boolean;
  status?: boolean;
  cancel?: string;
}

/** A reprocess run as the API answers it (GET /v1/reprocess/{id}). */
interface Run {
  id: string;
  processor: string;
  status: string;
  customerId: string | null;
  since: string | null;
  total: number;
  updated: number;
  skipped: number;
  failed: number;
}

function describeRun(run: Run): string {
  const done = run.updated + run.skipped + run.failed;
  const scope = [run.customerId && `customer ${run.customerId}`, run.since && `since ${run.since}`]
    .filter(Boolean)
    .join(', ');
  return `${run.id}  ${run.processor.padEnd(16)} ${run.status.padEnd(9)} ${done}/${run.total}  updated ${run.updated}, skipped ${run.skipped}, failed ${run.failed}${scope ? `  (${scope})` : ''}`;
}

/** Reads "--since 2026-11-20", "--since 2026-11-20T10:00:00Z" or "--since 3d" (that long ago). */
export function parseSince(text: string): Date | undefined {
  const ago = parseDuration(text);
  if (ago !== undefined && !/^\d+$/.test(text)) return new Date(Date.now() - ago);
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/**
 * `imagelake reprocess`: asks the running server (--url / IMAGELAKE_URL, admin token) to queue one
 * processor again over the images in retention, and follows the run. The server checks the name
 * against its own processors, so this needs no processors file and never opens a catalog itself.
 */
export async function reprocessCommand(client: ApiClient, flags: ReprocessFlags): Promise<number> {
  if (flags.status) {
    const { runs } = await client.json<{ runs: Run[] }>('GET', '/v1/reprocess');
    if (runs.length === 0) console.log('No reprocess runs yet.');
    for (const run of runs) console.log(describeRun(run));
    return 0;
  }
  if (flags.cancel) {
    const run = await client.json<Run>('DELETE', `/v1/reprocess/${encodeURIComponent(flags.cancel)}`);
    console.log(
      run.status === 'cancelled'
        ? `Cancelled ${run.id}; jobs already running finish.`
        : `Run ${run.id} is ${run.status}; nothing to cancel.`,
    );
    return run.status === 'cancelled' ? 0 : 1;
  }
  const name = flags.processor;
  if (!name) {
    console.error(
      'imagelake: usage: imagelake reprocess --processor NAME [--since DAY|3d] [--customer ID] [--force] [--detach]',
    );
    return 2;
  }
  const since = flags.since === undefined ? undefined : parseSince(flags.since);
  if (flags.since !== undefined && !since) {
    console.error(`imagelake: --since ${flags.since} is neither a date (2026-11-20) nor a duration (3d)`);
    return 2;
  }
  const run = await client.json<Run & { resumed: boolean }>('POST', '/v1/reprocess', {
    processor: name,
    ...(flags.customer ? { customerId: flags.customer } : {}),
    ...(since ? { since: since.toISOString() } : {}),
    ...(flags.force ? { force: true } : {}),
  });
  console.error(
    `${run.resumed ? 'Resuming' : 'Started'} reprocess run ${run.id}: "${name}" over ${run.total} images in retention. The workers run it in the background.`,
  );
  if (flags.detach) {
    console.log(run.id);
    return 0;
  }
  return await follow(client, run.id);
}

/** A progress bar until the run is done; Ctrl-C stops watching, not the run. */
async function follow(client: ApiClient, id: string): Promise<number> {
  const get = () => client.json<Run>('GET', `/v1/reprocess/${id}`);
  const tty = process.stderr.isTTY;
  const bar = progressBar(
    'reprocess [{bar}] {value}/{total}  updated {updated}  skipped {skipped}  failed {failed}',
  );
  let stop = false;
  process.once('SIGINT', () => {
    stop = true;
  });
  let last = -1;
  let lastChange = Date.now();
  let warned = false;
  let run = await get();
  bar?.start(run.total, 0, { updated: 0, skipped: 0, failed: 0 });
  while (!stop && run.status === 'running') {
    await new Promise((r) => setTimeout(r, 500));
    run = await get();
    const done = run.updated + run.skipped + run.failed;
    bar?.update(done, { updated: run.updated, skipped: run.skipped, failed: run.failed });
    if (done !== last) {
      last = done;
      lastChange = Date.now();
      if (!tty) console.error(`${done}/${run.total}`);
    } else if (!warned && Date.now() - lastChange > 15_000) {
      warned = true;
      bar?.stop();
      console.error(
        'No progress for 15 s: is a worker running (imagelake serve, role worker) with this processor?',
      );
    }
  }
  bar?.stop();
  if (stop) {
    console.error(`Stopped watching; the run goes on. Follow it again with: imagelake reprocess --status`);
    return 0;
  }
  console.log(describeRun(run));
  return run.failed > 0 ? 1 : 0;
}
