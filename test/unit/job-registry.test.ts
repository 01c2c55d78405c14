import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JOB_KINDS, PROCESS_IMAGE, REPROCESS_IMAGE } from '../../src/catalog/queue.ts';
import type { JobHandler } from '../../src/processing/jobs/context.ts';
import { jobHandlers, jobRegistry } from '../../src/processing/jobs/registry.ts';
import { Runner, type RunnerDeps } from '../../src/processing/runner.ts';

const handler = (kind: JobHandler['kind']): JobHandler => ({
  kind,
  payload: (job) => job.imageId,
  handle: async () => {},
});

describe('job registry', () => {
  it('has one handler for every job kind', () => {
    const registry = jobRegistry();
    assert.deepEqual([...registry.keys()].sort(), [...JOB_KINDS].sort());
    assert.equal(jobHandlers().length, JOB_KINDS.length);
  });

  it('refuses a job kind without a handler', () => {
    assert.throws(() => jobRegistry([handler(PROCESS_IMAGE)]), /No handler .*reprocess-image/);
  });

  it('refuses a job kind with two handlers', () => {
    assert.throws(
      () => jobRegistry([handler(PROCESS_IMAGE), handler(REPROCESS_IMAGE), handler(PROCESS_IMAGE)]),
      /Two handlers .*process-image/,
    );
  });

  it('refuses a handler for a kind the queue does not know', () => {
    assert.throws(
      () => jobRegistry([...jobHandlers(), handler('resize-image' as JobHandler['kind'])]),
      /unknown job kind: resize-image/,
    );
  });

  it('fails the worker at boot when a handler is missing or doubled', () => {
    const deps = {} as RunnerDeps;
    assert.throws(() => new Runner({ ...deps, handlers: [handler(REPROCESS_IMAGE)] }), /No handler/);
    assert.throws(
      () =>
        new Runner({
          ...deps,
          handlers: [handler(PROCESS_IMAGE), handler(REPROCESS_IMAGE), handler(REPROCESS_IMAGE)],
        }),
      /Two handlers/,
    );
    assert.doesNotThrow(() => new Runner(deps));
  });
});
