import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Processors } from '../../../src/processing/processors/chain.ts';
import { checkMetadata, parseFields } from '../../../src/processing/processors/fields.ts';
import {
  loadProcessorsFile,
  ProcessorConfigError,
  parseSpecs,
} from '../../../src/processing/processors/spec.ts';
import { fixture, image, node, open } from './helpers.ts';

const defaults = { timeoutMs: 30_000, concurrency: 2 };
const problemsOf = (entries: unknown[]) => {
  try {
    parseSpecs(entries, '/srv', defaults, 'processors.json');
  } catch (error) {
    assert.ok(error instanceof ProcessorConfigError);
    return error.problems;
  }
  return [];
};

describe('the processors file', () => {
  it('resolves paths against its own folder and applies defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'processors-'));
    const file = join(dir, 'processors.json');
    writeFileSync(
      file,
      JSON.stringify({
        processors: [
          { name: 'a', module: './a.ts' },
          {
            name: 'b',
            command: ['./bin/b', '--fast'],
            timeout: '5s',
            memory: '256MB',
            after: ['a'],
            required: false,
          },
          {
            name: 'c',
            url: 'http://c/process',
            version: '3',
            fields: { x: 'number?' },
            headers: { 'X-Key': 'k' },
          },
        ],
      }),
    );
    const [a, b, c] = loadProcessorsFile(file, defaults);
    assert.equal(a!.kind === 'module' && a!.module, join(dir, 'a.ts'));
    assert.deepEqual(b!.kind === 'command' && b!.command, [join(dir, 'bin/b'), '--fast']);
    assert.equal(b!.timeoutMs, 5000);
    assert.equal(b!.memoryBytes, 256 * 2 ** 20);
    assert.equal(b!.required, false);
    assert.equal(a!.timeoutMs, 30_000);
    assert.equal(c!.kind === 'url' && c!.retries, 2);
    assert.deepEqual(c!.fields, { x: { type: 'number', optional: true } });
  });

  it('reports every mistake at once, each naming its processor', () => {
    const problems = problemsOf([
      { name: 'Bad Name', module: 'x.ts' },
      { name: 'two', module: 'x.ts', command: 'y' },
      { name: 'svc', url: 'ftp://x' },
      { name: 'slow', command: 'x', timeout: 'forever', colour: 'red' },
      { name: 'dep', module: 'x.ts', after: ['nobody'] },
      { name: 'typed', module: 'x.ts', fields: { n: 'float' } },
      { name: 'envy', command: 'x', env: { RETRIES: 3 } },
      { name: 'hdr', url: 'http://x/', version: '1', fields: {}, headers: ['token'] },
    ]);
    const text = problems.join('\n');
    assert.match(text, /processor "Bad Name": name must be a lowercase identifier/);
    assert.match(text, /processor "two": give exactly one of "module"/);
    assert.match(text, /processor "svc": "url" must be an http/);
    assert.match(text, /processor "svc": "version" is required/);
    assert.match(text, /processor "svc": "fields" is required/);
    assert.match(text, /processor "slow": unknown key "colour"/);
    assert.match(text, /processor "slow": "timeout" must be a duration/);
    assert.match(text, /processor "dep" runs after "nobody", which is not declared/);
    assert.match(text, /field "n" has type "float"/);
    assert.match(text, /processor "envy": "env" must be an object of strings/);
    assert.match(text, /processor "hdr": "headers" must be an object of strings/);
  });

  it('refuses a dependency cycle', () => {
    const problems = problemsOf([
      { name: 'a', module: 'a.ts', after: ['b'] },
      { name: 'b', module: 'b.ts', after: ['a'] },
    ]);
    assert.match(problems.join(), /"a", "b" depend on each other in a cycle/);
  });

  it('a missing file or bad JSON says so', () => {
    assert.throws(() => loadProcessorsFile('/nonexistent/processors.json', defaults), /does not exist/);
  });
});

describe('starting processors', () => {
  const opened: Processors[] = [];
  after(() => Promise.all(opened.map((p) => p.close())));
  const fails = async (entries: Array<Record<string, unknown>>, pattern: RegExp) => {
    await assert.rejects(open(entries), (error: Error) => {
      assert.match(error.message, pattern);
      return true;
    });
  };

  it('checks names, pinned versions and declared fields against what the processor says', async () => {
    await fails(
      [{ name: 'other', module: fixture('mean-color.ts') }],
      /calls itself "mean-color".*names it "other"/,
    );
    await fails(
      [{ name: 'mean-color', module: fixture('mean-color.ts'), version: '9' }],
      /version 1\.2\.0.*pins 9/,
    );
    await fails(
      [{ name: 'cmd', command: [node, fixture('command.ts'), 'cmd', '2.0.0'], version: '1.0.0' }],
      /pins 1\.0\.0/,
    );
    await fails([{ name: 'invalid', module: fixture('invalid.ts') }], /name must be a lowercase identifier/);
  });

  it('a command that cannot start or never says hello stops the boot with a clear error', async () => {
    await fails(
      [{ name: 'nope', command: '/nonexistent/processor' }],
      /could not be started: spawn \/nonexistent\/processor ENOENT/,
    );
    await fails(
      [{ name: 'mute', command: [node, '-e', 'setTimeout(() => {}, 60000)'], startTimeout: '500ms' }],
      /said no hello within 500 ms/,
    );
    await fails(
      [
        {
          name: 'dies',
          command: [node, '-e', 'console.error("ModuleNotFoundError: numpy"); process.exit(1)'],
        },
      ],
      /exited \(code 1\).*ModuleNotFoundError: numpy/s,
    );
  });
});

describe('order, dependencies, required and optional', () => {
  const opened: Processors[] = [];
  after(() => Promise.all(opened.map((p) => p.close())));

  it('runs dependencies first and hands each processor the outputs before it', async () => {
    const processors = await open([
      { name: 'cmd', command: [node, fixture('command.ts'), 'cmd', '1.0.0'], after: ['mean-color'] },
      { name: 'mean-color', module: fixture('mean-color.ts') },
    ]);
    opened.push(processors);
    assert.deepEqual(
      processors.list.map((p) => p.name),
      ['mean-color', 'cmd'],
    );
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.deepEqual(Object.keys(out.versions), ['mean-color', 'cmd']);
    assert.equal(out.outputs.cmd?.width, 100);
  });

  it('a failed optional processor does not fail the image; what runs after it is skipped', async () => {
    const processors = await open([
      {
        name: 'misbehaves',
        module: fixture('misbehaves.ts'),
        required: false,
        config: { mode: 'throw', width: 100 },
      },
      {
        name: 'cmd',
        command: [node, fixture('command.ts'), 'cmd', '1.0.0'],
        after: ['misbehaves'],
        required: false,
      },
      { name: 'mean-color', module: fixture('mean-color.ts') },
    ]);
    opened.push(processors);
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.equal(out.failure, undefined);
    assert.equal(out.errors.misbehaves?.code, 'PROCESSOR_FAILED');
    assert.equal(out.errors.misbehaves?.processorCode, 'NO_FACES');
    assert.equal(out.errors.cmd?.code, 'PROCESSOR_SKIPPED');
    assert.ok(out.outputs['mean-color']);
    assert.equal(
      out.versions.misbehaves,
      '1.0.0',
      'a processor that ran and failed is recorded with its version',
    );
  });

  it('a failed required processor fails the image and stops the chain', async () => {
    const processors = await open([
      { name: 'misbehaves', module: fixture('misbehaves.ts'), config: { mode: 'malformed', width: 100 } },
      { name: 'mean-color', module: fixture('mean-color.ts') },
    ]);
    opened.push(processors);
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.equal(out.failure?.processor, 'misbehaves');
    assert.equal(out.failure?.code, 'PROCESSOR_OUTPUT_INVALID');
    assert.match(
      out.failure!.message,
      /"ok" should be boolean, got a string; "extra" is not a declared field/,
    );
    assert.equal(out.outputs['mean-color'], undefined);
  });

  it('derived images from a command come back checked, with labels', async () => {
    const processors = await open([
      { name: 'cmd', command: [node, fixture('command.ts'), 'cmd', '1.0.0'], config: { derive: true } },
    ]);
    opened.push(processors);
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.deepEqual(out.labels.cmd, ['seen']);
    assert.equal(out.images[0]?.name, 'copy');
    assert.equal(out.images[0]?.processor, 'cmd');
    assert.deepEqual(Buffer.from(out.images[0]!.data), input.original);
  });
});

describe('declared fields', () => {
  const fields = parseFields(
    { n: 'integer', x: 'number?', tags: 'string[]', meta: 'object', on: 'boolean' },
    't',
  );
  it('accepts what matches and names every mismatch', () => {
    assert.deepEqual(checkMetadata(fields, { n: 3, tags: ['a'], meta: {}, on: false }), []);
    assert.deepEqual(checkMetadata(fields, { n: 3, x: null, tags: [], meta: { a: 1 }, on: true }), []);
    assert.deepEqual(checkMetadata(fields, { n: 3.5, x: Number.NaN, tags: [1], meta: [], extra: 1 }), [
      '"n" should be integer, got the number 3.5',
      '"x" should be number, got NaN',
      '"tags" should be string[], got a list',
      '"meta" should be object, got a list',
      '"extra" is not a declared field',
      '"on" is missing',
    ]);
    assert.deepEqual(checkMetadata(fields, [1]), ['metadata must be an object, not an array']);
  });
});
