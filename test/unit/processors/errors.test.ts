import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { runsOf } from '../../../src/analytics/facts.ts';
import { isRetryable, Processors } from '../../../src/processing/processors/chain.ts';
import { parseSpecs } from '../../../src/processing/processors/spec.ts';
import { fixture, image, node, open } from './helpers.ts';

describe("a processor's own errors", () => {
  const opened: Processors[] = [];
  after(() => Promise.all(opened.map((p) => p.close())));

  for (const [kind, entry] of [
    [
      'module',
      (mode: string) => ({
        module: fixture('misbehaves.ts'),
        name: 'misbehaves',
        config: { mode, width: 100 },
      }),
    ],
    [
      'command',
      (mode: string) => ({
        command: [node, fixture('command.ts'), 'misbehaves', '1.0.0'],
        name: 'misbehaves',
        config: { mode, width: 100 },
      }),
    ],
  ] as const) {
    it(`${kind}: keeps its code in the runs, and is not retried unless it says retryable`, async () => {
      const processors = await open([entry('throw')]);
      opened.push(processors);
      const { info, input } = await image();
      const failed = await processors.run(info, input);
      const error = failed.errors.misbehaves!;
      assert.equal(error.code, 'PROCESSOR_FAILED');
      assert.equal(error.processorCode, 'NO_FACES');
      assert.equal(isRetryable(error), false, 'the same bytes would fail the same way');
      assert.equal(runsOf(failed).misbehaves?.error, 'NO_FACES', 'facts and the rollup record its own code');

      const transient = await open([entry('retryable')]);
      opened.push(transient);
      const out = await transient.run(info, input);
      assert.equal(out.errors.misbehaves?.processorCode, 'MODEL_DOWN');
      assert.equal(out.errors.misbehaves?.retryable, true);
      assert.equal(isRetryable(out.errors.misbehaves!), true);
    });
  }

  it('an exception without a code is PROCESSOR_FAILED, not retried; timeouts and crashes are', async () => {
    const processors = await open([{ name: 'throws', module: fixture('throws.ts') }]);
    opened.push(processors);
    const { info, input } = await image();
    const out = await processors.run(info, input);
    assert.equal(out.errors.throws?.code, 'PROCESSOR_FAILED');
    assert.equal(out.errors.throws?.processorCode, undefined);
    assert.equal(isRetryable(out.errors.throws!), false);
    assert.equal(runsOf(out).throws?.error, 'PROCESSOR_FAILED');
    for (const code of [
      'PROCESSOR_TIMEOUT',
      'PROCESSOR_CRASHED',
      'PROCESSOR_MEMORY',
      'PROCESSOR_UNAVAILABLE',
    ] as const)
      assert.equal(isRetryable({ code, message: '' }), true, code);
    for (const code of ['PROCESSOR_OUTPUT_INVALID', 'PROCESSOR_SKIPPED'] as const)
      assert.equal(isRetryable({ code, message: '' }), false, code);
  });
});

describe('fields at boot', () => {
  it('refuses a processors file whose fields disagree with what the processor declares', async () => {
    await assert.rejects(
      open([
        {
          name: 'cmd',
          command: [node, fixture('command.ts'), 'cmd', '1.0.0'],
          fields: { width: 'number', seen: 'string', note: 'string?' },
        },
      ]),
      /"cmd" declares fields \{"width":"integer","seen":"string","note":"string\?"\}, but the processors file says \{"width":"number",/,
    );
  });

  it('accepts the same fields in another order', async () => {
    const processors = await open([
      {
        name: 'cmd',
        command: [node, fixture('command.ts'), 'cmd', '1.0.0'],
        fields: { note: 'string?', seen: 'string', width: 'integer' },
      },
    ]);
    assert.deepEqual(processors.describe()[0]?.fields, { note: 'string?', seen: 'string', width: 'integer' });
    await processors.close();
  });
});

describe('stopping a command processor', () => {
  it('logs its clean exit at shutdown as no crash', async () => {
    const lines: Array<{ level: number; msg: string }> = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const specs = parseSpecs(
      [{ name: 'cmd', command: [node, fixture('command.ts'), 'cmd', '1.0.0'] }],
      process.cwd(),
      { timeoutMs: 10_000, concurrency: 1 },
      'test',
    );
    const processors = await Processors.open(specs, { log, source: 'test' });
    await processors.close();
    const exit = lines.find((l) => /exited \(code 0\)/.test(l.msg));
    assert.ok(exit, `the exit is logged: ${JSON.stringify(lines)}`);
    assert.equal(exit.level, 20, 'at debug, not warn');
    assert.equal(
      lines.filter((l) => l.level >= 40).length,
      0,
      `nothing at warn or above: ${JSON.stringify(lines)}`,
    );
  });
});
