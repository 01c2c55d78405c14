import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type pg from 'pg';
import pino from 'pino';
import { withSessionLock } from '../../src/catalog/locks.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { Scheduler } from '../../src/retention/scheduler.ts';

const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

/** A logger whose lines are kept, parsed. */
function keptLog(): { log: pino.Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

/** A client of a pool: its queries answered by `answer`, what it was released with kept. */
function client(answer: (text: string) => Promise<unknown>) {
  const released: Array<Error | boolean | undefined> = [];
  const queries: string[] = [];
  const stub = {
    query: (text: string) => {
      queries.push(text);
      return answer(text);
    },
    release: (error?: Error | boolean) => {
      released.push(error);
    },
  };
  return { pool: { connect: async () => stub } as unknown as pg.Pool, released, queries };
}

describe('the scheduler when the catalog does not answer', () => {
  it('skips the tick with a warning and ticks again; the process goes on (the rejection ended it)', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const { log, lines } = keptLog();
    const metrics = createMetrics();
    let worked = 0;
    const scheduler = new Scheduler({
      pool: { connect: () => Promise.reject(refused()) } as unknown as pg.Pool,
      log,
      metrics,
      intervalMs: 30,
      work: async () => {
        worked++;
      },
    });
    try {
      scheduler.start();
      const deadline = Date.now() + 5000;
      while (lines.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await scheduler.stop();
      // A turn of the event loop for any rejection left unhandled to be reported.
      await new Promise((r) => setImmediate(r));
      assert.ok(lines.length >= 2, 'a warning at each tick');
      for (const line of lines) {
        assert.equal(line.level, 40);
        assert.match(line.msg, /could not take its lock.*runs again at the next interval/);
      }
      assert.equal(worked, 0);
      const errors = (await metrics.purgeRuns.get()).values.find((v) => v.labels.result === 'error');
      assert.ok((errors?.value ?? 0) >= 2, 'counted as failed runs');
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('a session lock', () => {
  it('sends a connection whose query failed back as broken, to be closed rather than lent again', async () => {
    const failure = refused();
    const { pool, released } = client(() => Promise.reject(failure));
    await assert.rejects(
      withSessionLock(pool, 1, async () => 'never'),
      /ECONNREFUSED/,
    );
    assert.deepEqual(released, [failure]);
  });

  it('unlocks and sends the connection back whole when the work fails', async () => {
    const { pool, released, queries } = client(async () => ({ rows: [{ locked: true }] }));
    await assert.rejects(
      withSessionLock(pool, 1, async () => {
        throw new Error('the work failed');
      }),
      /the work failed/,
    );
    assert.match(queries.at(-1)!, /pg_advisory_unlock/);
    assert.deepEqual(released, [undefined]);
  });

  it('does not run the work when another session holds the lock', async () => {
    const { pool, released } = client(async () => ({ rows: [{ locked: false }] }));
    let ran = false;
    const result = await withSessionLock(pool, 1, async () => {
      ran = true;
    });
    assert.deepEqual(result, { ran: false });
    assert.equal(ran, false);
    assert.deepEqual(released, [undefined]);
  });
});
