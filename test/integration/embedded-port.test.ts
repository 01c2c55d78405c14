import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { PORT_FILE } from '../../src/catalog/embedded.ts';
import { loadConfig } from '../../src/config/config.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { ADMIN, api } from './harness.ts';

const dirs: string[] = [];
const running = new Set<RunningServer>();
async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imagelake-port-it-'));
  dirs.push(dir);
  return dir;
}

/** The API only, on the embedded PostgreSQL with the default port rule (nothing configured). */
async function start(dir: string, env: Record<string, string> = {}): Promise<RunningServer> {
  const config = loadConfig({
    IMAGELAKE_DATA_DIR: dir,
    IMAGELAKE_PORT: '0',
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    ...env,
  });
  const server = await startServer(config, { roles: ['api'], log: pino({ level: 'silent' }) });
  running.add(server);
  return server;
}

async function stop(server: RunningServer): Promise<void> {
  running.delete(server);
  await server.stop();
}

async function connection(server: RunningServer): Promise<string> {
  const { status, body } = await api(server.url!, ADMIN, 'GET', '/v1/analytics/connection');
  assert.equal(status, 200, JSON.stringify(body));
  return body.url;
}

describe('the BI connection URL of the embedded PostgreSQL', () => {
  after(async () => {
    for (const server of running) await stop(server);
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('stays the same across restarts; a second data dir beside it gets a port of its own', async () => {
    const dir = await dataDir();
    let server = await start(dir);
    const before = await connection(server);
    const port = new URL(before).port;
    assert.equal(
      (await readFile(join(dir, PORT_FILE), 'utf8')).trim(),
      port,
      'the port is kept in the data dir',
    );

    // A second installation on the same machine while the first runs.
    const otherDir = await dataDir();
    const other = await start(otherDir);
    try {
      assert.notEqual(new URL(await connection(other)).port, port);
      // Configured to the first one's port, it says so instead of failing obscurely.
      await assert.rejects(
        start(await dataDir(), { IMAGELAKE_POSTGRES_PORT: port }),
        new RegExp(`Port ${port} \\(IMAGELAKE_POSTGRES_PORT\\) for the embedded PostgreSQL is in use`),
      );
    } finally {
      await stop(other);
    }

    for (let restart = 0; restart < 2; restart++) {
      await stop(server);
      server = await start(dir);
      assert.equal(await connection(server), before, `after restart ${restart + 1}`);
    }
    // The saved URL still reaches the analytics schema.
    const client = new pg.Client({ connectionString: before });
    await client.connect();
    try {
      const { rows } = await client.query('select count(*)::int as n from analytics.facts');
      assert.deepEqual(rows, [{ n: 0 }]);
    } finally {
      await client.end();
      await stop(server);
    }
  });
});
