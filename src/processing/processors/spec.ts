import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseBytes, parseDuration } from '../../config/duration.ts';
import { PROCESSOR_NAME } from './contract.ts';
import { type Fields, parseFields } from './fields.ts';

/**
 * The one place processors are declared: a JSON file (IMAGELAKE_PROCESSORS_FILE), checked as a
 * whole at boot so every mistake is reported at once, before any image is taken.
 *
 *   {"processors": [
 *     {"name": "quality", "command": ["python3", "quality.py"], "memory": "512MB", "timeout": "20s"},
 *     {"name": "tagger", "url": "http://tagger/process", "version": "2.1.0", "fields": {"label": "string"},
 *      "after": ["quality"], "required": false}
 *   ]}
 */
interface Common {
  name: string;
  /** Pinned version: for modules and commands, must match what the processor reports. */
  version: string | undefined;
  /** Declared fields here win over the processor's own declaration. */
  fields: Fields | undefined;
  required: boolean;
  /** Names of processors whose metadata this one reads; they run first. */
  after: string[];
  timeoutMs: number;
  memoryBytes: number;
  concurrency: number;
  input: 'original' | 'preview';
  config: Record<string, unknown>;
}

export type ProcessorSpec =
  | (Common & { kind: 'module'; module: string })
  | (Common & {
      kind: 'command';
      command: string[];
      cwd: string;
      env: Record<string, string>;
      startTimeoutMs: number;
    })
  | (Common & { kind: 'url'; url: string; headers: Record<string, string>; retries: number });

export class ProcessorConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`${source} is not valid:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ProcessorConfigError';
    this.problems = problems;
  }
}

const KEYS = new Set([
  'name',
  'module',
  'command',
  'url',
  'version',
  'fields',
  'required',
  'after',
  'timeout',
  'memory',
  'concurrency',
  'input',
  'config',
  'env',
  'cwd',
  'startTimeout',
  'headers',
  'retries',
]);

export interface SpecDefaults {
  timeoutMs: number;
  concurrency: number;
}

/** Reads and checks a processors file; relative paths in it are relative to the file. */
export function loadProcessorsFile(path: string, defaults: SpecDefaults): ProcessorSpec[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const why =
      (error as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'the file does not exist'
        : (error as Error).message;
    throw new ProcessorConfigError(path, [why]);
  }
  const list = (raw as { processors?: unknown })?.processors;
  if (!Array.isArray(list)) throw new ProcessorConfigError(path, ['expected {"processors": [ ... ]}']);
  return parseSpecs(list, dirname(resolve(path)), defaults, path);
}

/** IMAGELAKE_PROCESSORS: module paths, the short form for modules with every default. */
export function modulesAsSpecs(paths: string[], defaults: SpecDefaults): ProcessorSpec[] {
  return paths.map((module) => ({
    kind: 'module' as const,
    module: resolve(module),
    name: '',
    version: undefined,
    fields: undefined,
    required: true,
    after: [],
    timeoutMs: defaults.timeoutMs,
    memoryBytes: DEFAULT_MEMORY.module,
    concurrency: defaults.concurrency,
    input: 'original' as const,
    config: {},
  }));
}

const DEFAULT_MEMORY = { module: 512 * 2 ** 20, command: 1024 * 2 ** 20, url: 0 };

export function parseSpecs(
  list: unknown[],
  base: string,
  defaults: SpecDefaults,
  source: string,
): ProcessorSpec[] {
  const problems: string[] = [];
  const specs: ProcessorSpec[] = [];
  list.forEach((entry, index) => {
    const where = `processors[${index}]`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      problems.push(`${where} must be an object`);
      return;
    }
    const e = entry as Record<string, unknown>;
    const who = typeof e.name === 'string' ? `processor "${e.name}"` : where;
    const bad = (message: string) => problems.push(`${who}: ${message}`);
    for (const key of Object.keys(e)) if (!KEYS.has(key)) bad(`unknown key "${key}"`);
    if (typeof e.name !== 'string' || !PROCESSOR_NAME.test(e.name))
      bad('name must be a lowercase identifier (a-z, 0-9, _ and -)');
    const kinds = (['module', 'command', 'url'] as const).filter((k) => e[k] !== undefined);
    if (kinds.length !== 1) {
      bad(
        'give exactly one of "module" (a JS/TS file), "command" (an executable) or "url" (an HTTP service)',
      );
      return;
    }
    const kind = kinds[0]!;
    const get = <T>(key: string, fallback: T, parse: (v: unknown) => T | undefined, hint: string): T => {
      if (e[key] === undefined) return fallback;
      const value = parse(e[key]);
      if (value === undefined) {
        bad(`"${key}" ${hint}`);
        return fallback;
      }
      return value;
    };
    const duration = (v: unknown) => (typeof v === 'string' ? parseDuration(v) : undefined);
    let fields: Fields | undefined;
    if (e.fields !== undefined) {
      try {
        fields = parseFields(e.fields, who);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    const common: Common = {
      name: String(e.name ?? ''),
      version: get(
        'version',
        undefined,
        (v) => (typeof v === 'string' && v ? v : undefined),
        'must be a non-empty string',
      ),
      fields,
      required: get(
        'required',
        true,
        (v) => (typeof v === 'boolean' ? v : undefined),
        'must be true or false',
      ),
      after: get(
        'after',
        [] as string[],
        (v) => (Array.isArray(v) && v.every((n) => typeof n === 'string') ? (v as string[]) : undefined),
        'must be a list of processor names',
      ),
      timeoutMs: get('timeout', defaults.timeoutMs, duration, 'must be a duration like "30s"'),
      memoryBytes: get(
        'memory',
        DEFAULT_MEMORY[kind],
        (v) => (typeof v === 'string' ? parseBytes(v) : undefined),
        'must be a size like "512MB"',
      ),
      concurrency: get(
        'concurrency',
        defaults.concurrency,
        (v) =>
          Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 256 ? (v as number) : undefined,
        'must be a whole number from 1 to 256',
      ),
      input: get(
        'input',
        'original' as const,
        (v) => (v === 'original' || v === 'preview' ? v : undefined),
        'must be "original" or "preview"',
      ),
      config: get(
        'config',
        {},
        (v) => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined),
        'must be an object',
      ),
    };
    const onlyFor = (keys: string[], allowed: string) => {
      for (const key of keys)
        if (e[key] !== undefined && kind !== allowed) bad(`"${key}" applies to ${allowed} processors only`);
    };
    onlyFor(['env', 'cwd', 'startTimeout'], 'command');
    onlyFor(['headers', 'retries'], 'url');
    if (kind === 'module') {
      if (typeof e.module !== 'string' || !e.module) bad('"module" must be a file path');
      if (e.input !== undefined)
        bad('"input" does not apply to modules: they get the original and the decoded pixels');
      specs.push({ ...common, kind, module: resolve(base, String(e.module)) });
    } else if (kind === 'command') {
      const command = typeof e.command === 'string' ? [e.command] : e.command;
      if (
        !Array.isArray(command) ||
        command.length === 0 ||
        !command.every((c) => typeof c === 'string' && c)
      ) {
        bad('"command" must be an executable, or a list: the executable and its arguments');
        return;
      }
      // A relative executable path ("./tagger") is the file's neighbour; a bare name ("python3") is looked up on PATH.
      const [exe, ...args] = command as string[];
      const executable = exe!.includes('/') && !isAbsolute(exe!) ? resolve(base, exe!) : exe!;
      specs.push({
        ...common,
        kind,
        command: [executable, ...args],
        cwd: resolve(base, typeof e.cwd === 'string' ? e.cwd : '.'),
        env: get('env', {}, stringMap, 'must be an object of strings'),
        startTimeoutMs: get('startTimeout', 30_000, duration, 'must be a duration like "30s"'),
      });
    } else {
      let url: URL | undefined;
      try {
        url = new URL(String(e.url));
      } catch {}
      if (!url || !/^https?:$/.test(url.protocol)) bad('"url" must be an http:// or https:// address');
      if (!common.version) bad('"version" is required for url processors (the service cannot be asked)');
      if (!common.fields) bad('"fields" is required for url processors, e.g. {"label": "string"}');
      if (e.memory !== undefined)
        bad('"memory" does not apply to url processors: the service owns its memory');
      const headers = get('headers', {}, stringMap, 'must be an object of strings');
      specs.push({
        ...common,
        kind,
        url: String(e.url),
        headers: expandEnv(headers, bad),
        retries: get(
          'retries',
          2,
          (v) =>
            Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 10 ? (v as number) : undefined,
          'must be a whole number from 0 to 10',
        ),
      });
    }
  });
  problems.push(...checkOrder(specs));
  if (problems.length) throw new ProcessorConfigError(source, problems);
  return specs;
}

/** Secrets stay out of the file: "Bearer ${TAGGER_TOKEN}" is filled from the environment. */
/** An object whose values are all strings (env, headers), or undefined. */
function stringMap(v: unknown): Record<string, string> | undefined {
  // An array is an object too, and ["TOKEN"] would pass as {"0": "TOKEN"}.
  return v &&
    typeof v === 'object' &&
    !Array.isArray(v) &&
    Object.values(v).every((x) => typeof x === 'string')
    ? (v as Record<string, string>)
    : undefined;
}

function expandEnv(headers: Record<string, string>, bad: (m: string) => void): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    out[name] = value.replace(/\$\{([A-Z_][A-Z0-9_]*)\}/g, (_, v: string) => {
      const found = process.env[v];
      if (found === undefined) bad(`header "${name}" needs the environment variable ${v}, which is not set`);
      return found ?? '';
    });
  }
  return out;
}

function checkOrder(specs: ProcessorSpec[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const s of specs) {
    if (s.name && names.has(s.name)) problems.push(`processor "${s.name}" is declared twice`);
    names.add(s.name);
  }
  for (const s of specs)
    for (const dep of s.after)
      if (!names.has(dep)) problems.push(`processor "${s.name}" runs after "${dep}", which is not declared`);
  if (problems.length === 0) {
    try {
      runOrder(specs);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  return problems;
}

/**
 * The order processors run in: the declared order, except that a processor waits for those it runs
 * after. Stable, so a file without dependencies runs top to bottom.
 */
export function runOrder<T extends { name: string; after: string[] }>(specs: T[]): T[] {
  const done = new Set<string>();
  const ordered: T[] = [];
  const pending = [...specs];
  while (pending.length) {
    const next = pending.findIndex((s) => s.after.every((d) => done.has(d)));
    if (next === -1) {
      throw new Error(
        `processors ${pending.map((s) => `"${s.name}"`).join(', ')} depend on each other in a cycle`,
      );
    }
    const [spec] = pending.splice(next, 1);
    ordered.push(spec!);
    done.add(spec!.name);
  }
  return ordered;
}
