import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { connect } from '../../src/catalog/database.ts';
import { runningEmbeddedUrl } from '../../src/catalog/embedded.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, cli, createCustomer, settled, spawnServer, until, upload } from './harness.ts';

const command = fileURLToPath(new URL('../fixtures/processors/command.ts', import.meta.url));

describe('a reprocess run', () => {
  it('survives the worker being killed mid-run: resumed from its cursor, every image updated once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imagelake-reprocess-'));
    const file = (version: string, delayMs: number) =>
      JSON.stringify({
        processors: [
          { name: 'cmd', command: [process.execPath, command, 'cmd', version], config: { delayMs } },
        ],
      });
    await writeFile(join(dir, 'processors.json'), file('1.0.0', 0));
    const env = {
      IMAGELAKE_DATA_DIR: join(dir, 'data'),
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      IMAGELAKE_PROCESSORS_FILE: join(dir, 'processors.json'),
      IMAGELAKE_POLL_INTERVAL: '200ms',
      IMAGELAKE_JOB_LEASE: '3s',
      IMAGELAKE_WORKER_CONCURRENCY: '1',
      // Four at a time: the kill lands while most of the run is still behind its cursor.
      IMAGELAKE_REPROCESS_WINDOW: '4',
      SEEN_FILE: join(dir, 'seen.txt'),
    };
    let server = await spawnServer(env);
    try {
      const customer = await createCustomer(server.url, 'Reprocessed');
      const ids: string[] = [];
      for (let i = 0; i < 12; i++)
        ids.push(
          (await upload(server.url, customer.apiKey, await jpeg({ width: 120, height: 90, seed: i }))).body
            .id,
        );
      for (const id of ids)
        assert.equal((await settled(server.url, customer.apiKey, id)).status, 'processed');
      server.child.kill('SIGTERM');
      await new Promise((r) => server.child.once('exit', r));

      // Version 2 is slow enough to kill the worker part-way through.
      await writeFile(join(dir, 'processors.json'), file('2.0.0', 250));
      server = await spawnServer(env);
      const started = await cli(['reprocess', '--processor', 'cmd', '--detach', '--url', server.url], env);
      assert.equal(started.code, 0, started.out);
      const runId = started.out.trim().split('\n').at(-1)!;
      await until('a few images reprocessed', async () => {
        const { body } = await api(server.url, ADMIN, 'GET', `/v1/reprocess/${runId}`);
        return body.updated >= 3 && body.updated < 12;
      });
      // A reprocess run is bulk work: it takes only what interactive work leaves idle.
      const catalog = connect(runningEmbeddedUrl(env.IMAGELAKE_DATA_DIR)!);
      const queued = await until('the run has jobs queued', async () => {
        const rows = (
          await sql<{ kind: string; priority: string }>`select distinct kind, priority from jobs`.execute(
            catalog.db,
          )
        ).rows;
        return rows.length > 0 ? rows : undefined;
      });
      await catalog.db.destroy();
      assert.deepEqual(queued, [{ kind: 'reprocess-image', priority: 'bulk' }]);
      server.child.kill('SIGKILL');
      await new Promise((r) => server.child.once('exit', r));

      server = await spawnServer(env);
      const done = await until(
        'the run to finish after the restart',
        async () => {
          const { body } = await api(server.url, ADMIN, 'GET', `/v1/reprocess/${runId}`);
          return body.status === 'done' && body;
        },
        90_000,
      );
      assert.equal(done.updated, 12, JSON.stringify(done));
      assert.equal(done.queued, 12, 'the cursor queued each image once');
      assert.equal(done.failed, 0);
      for (const id of ids) {
        const { body } = await api(server.url, customer.apiKey, 'GET', `/v1/images/${id}`);
        assert.equal(body.processors.cmd, '2.0.0');
      }
      // At most the one image in hand at the kill ran twice; none was left out.
      const v2 = (await readFile(env.SEEN_FILE, 'utf8'))
        .trim()
        .split('\n')
        .filter((l) => l.endsWith(' 2.0.0'));
      assert.deepEqual(new Set(v2.map((l) => l.split(' ')[0])), new Set(ids));
      assert.ok(v2.length <= 13, `${v2.length} runs of version 2`);
    } finally {
      // A graceful stop, then the PostgreSQL the killed server left behind (its pid file says which).
      if (server.child.exitCode === null && server.child.signalCode === null) {
        const exited = new Promise((r) => server.child.once('exit', r));
        server.child.kill('SIGTERM');
        await exited;
      }
      const pidFile = await readFile(join(dir, 'data', 'postgres', 'postmaster.pid'), 'utf8').catch(() => '');
      const postgres = Number(pidFile.split('\n')[0]);
      if (postgres > 0) process.kill(postgres, 'SIGINT');
    }
  });
});
