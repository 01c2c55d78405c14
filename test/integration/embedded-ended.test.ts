import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { ADMIN, api, createCustomer, spawnServer } from './harness.ts';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imagelake-pg-ended-'));
  dirs.push(dir);
  return dir;
}

/** The pid of the embedded PostgreSQL serving a data dir. */
function postmasterOf(dir: string): number {
  return Number(readFileSync(join(dir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** `promise`, or a failure naming what did not happen within `ms`. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('the embedded PostgreSQL ends under a running imagelake', () => {
  it('serve says so and exits 1 rather than failing every request; the next start serves the same catalog', async () => {
    const dir = await dataDir();
    const env = { IMAGELAKE_DATA_DIR: dir, IMAGELAKE_ADMIN_TOKEN: ADMIN };
    const first = await spawnServer(env);
    try {
      const customer = await createCustomer(first.url, 'Still here');
      process.kill(postmasterOf(dir), 'SIGKILL');
      const code = await within(30_000, 'serve exiting after its PostgreSQL was killed', exited(first.child));
      assert.equal(code, 1, first.output());
      assert.match(first.output(), /the embedded PostgreSQL ended on its own/);
      assert.match(first.output(), /Start it again/);

      const second = await spawnServer(env);
      try {
        const { status, body } = await api(second.url, ADMIN, 'GET', `/v1/customers/${customer.id}`);
        assert.equal(status, 200, JSON.stringify(body));
        assert.equal(body.name, 'Still here');
      } finally {
        second.child.kill('SIGTERM');
        assert.equal(await within(30_000, 'the second serve stopping', exited(second.child)), 0);
      }
    } finally {
      first.child.kill('SIGKILL');
    }
  });

  it('stopping a server that has already ended returns at once (it waited for an exit that had come)', async () => {
    const dir = await dataDir();
    const embedded = await startEmbeddedPostgres(dir, pino({ level: 'silent' }), 0);
    const pid = postmasterOf(dir);
    process.kill(pid, 'SIGKILL');
    const why = await within(10_000, 'the end noticed', embedded.ended);
    assert.match(why, new RegExp(`pid ${pid}`));
    await within(5_000, 'stop after the end', embedded.stop());
  });

  it('a server stopped on purpose is not reported as ended', async () => {
    const dir = await dataDir();
    const embedded = await startEmbeddedPostgres(dir, pino({ level: 'silent' }), 0);
    await embedded.stop();
    const noticed = await Promise.race([
      embedded.ended.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_500)),
    ]);
    assert.equal(noticed, false);
  });
});
