import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Processors } from '../../../src/processing/processors/chain.ts';
import { fixture, image, node, open } from './helpers.ts';

// Each bad behaviour, in each local kind: only the poisoned image's step fails, with its code,
// and the next image is processed by the same processor (restarted where it had to be).
const POISON = 101;
const CASES = [
  { mode: 'throw', code: 'PROCESSOR_FAILED', processorCode: 'NO_FACES' },
  { mode: 'hang', code: 'PROCESSOR_TIMEOUT' },
  { mode: 'exit', code: 'PROCESSOR_CRASHED' },
  { mode: 'memory', code: 'PROCESSOR_MEMORY' },
  { mode: 'malformed', code: 'PROCESSOR_OUTPUT_INVALID' },
] as const;

const KINDS = {
  module: (mode: string) => ({
    name: 'misbehaves',
    module: fixture('misbehaves.ts'),
    memory: '64MB',
    timeout: '2s',
    config: { mode, width: POISON },
  }),
  command: (mode: string) => ({
    name: 'cmd',
    command: [node, fixture('command.ts'), 'cmd', '1.0.0'],
    memory: '200MB',
    timeout: '2s',
    config: { mode, width: POISON },
  }),
};

const opened: Processors[] = [];
after(() => Promise.all(opened.map((p) => p.close())));

for (const [kind, entry] of Object.entries(KINDS)) {
  describe(`a ${kind} processor that misbehaves`, () => {
    const cases =
      kind === 'command' ? [...CASES, { mode: 'garbage', code: 'PROCESSOR_OUTPUT_INVALID' } as const] : CASES;
    for (const c of cases) {
      it(`${c.mode}: fails that image's step with ${c.code}; the next image is fine`, async () => {
        const processors = await open([entry(c.mode)]);
        opened.push(processors);
        const name = processors.list[0]!.name;
        const bad = await image(POISON, 80);
        const good = await image(100, 80);
        const failed = await processors.run(bad.info, bad.input);
        assert.equal(failed.failure?.code, c.code, JSON.stringify(failed.failure));
        assert.equal(failed.failure?.processor, name);
        if ('processorCode' in c) assert.equal(failed.failure?.processorCode, c.processorCode);
        assert.deepEqual(failed.outputs, {});
        for (let i = 0; i < 2; i++) {
          const fine = await processors.run(good.info, good.input);
          assert.equal(fine.failure, undefined, JSON.stringify(fine.failure));
          assert.ok(fine.outputs[name], 'the processor answered the next image');
          assert.equal(fine.versions[name], '1.0.0');
        }
      });
    }
  });
}

describe("a command processor's own processes", () => {
  /** Whether a pid is gone (or only a zombie waiting to be reaped, which holds no memory). */
  const gone = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]?.startsWith('Z') ?? true;
    } catch {
      return true;
    }
  };

  for (const c of [
    { mode: 'child-memory', code: 'PROCESSOR_MEMORY', message: /with the processes it started/ },
    { mode: 'child-hang', code: 'PROCESSOR_TIMEOUT', message: /time limit/ },
  ]) {
    it(`${c.mode}: the child counts toward the limits and is killed with its processor`, async () => {
      const pidFile = join(tmpdir(), `imagelake-child-${process.pid}-${c.mode}`);
      const entry = KINDS.command(c.mode);
      const processors = await open([
        { ...entry, memory: '200MB', timeout: '4s', config: { ...entry.config, pidFile } },
      ]);
      opened.push(processors);
      const failed = await processors.run((await image(POISON, 80)).info, (await image(POISON, 80)).input);
      assert.equal(failed.failure?.code, c.code, JSON.stringify(failed.failure));
      assert.match(failed.failure!.message, c.message);
      const pid = Number(readFileSync(pidFile, 'utf8'));
      rmSync(pidFile);
      const deadline = Date.now() + 3000;
      while (!gone(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(gone(pid), `the child ${pid} died with its processor`);
      const good = await image(100, 80);
      assert.equal((await processors.run(good.info, good.input)).failure, undefined);
    });
  }
});
