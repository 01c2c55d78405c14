import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { choosePort, PORT_FILE, startOnPort } from '../../src/catalog/embedded.ts';

/** A real listener on a free port: the "other program" holding it. */
async function occupy(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  return { port: typeof address === 'object' && address ? address.port : 0, server };
}

describe("the embedded PostgreSQL's port", () => {
  const dirs: string[] = [];
  let busy: { port: number; server: Server };
  before(async () => {
    busy = await occupy();
  });
  after(() => busy.server.close());
  const fresh = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imagelake-port-'));
    dirs.push(dir);
    return dir;
  };
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it('takes the default port when free at the first start, saves it and keeps it', async () => {
    const free = await occupy();
    free.server.close();
    const data = await fresh();
    assert.deepEqual(await choosePort(data, undefined, free.port), { port: free.port, picked: true });
    assert.equal((await readFile(join(data, PORT_FILE), 'utf8')).trim(), String(free.port));
    assert.deepEqual(await choosePort(data, undefined, 1), { port: free.port, picked: false }, 'saved wins');
  });

  it('takes a free port and saves it when the default is in use (a second data dir on the machine)', async () => {
    const data = await fresh();
    const { port } = await choosePort(data, undefined, busy.port);
    assert.notEqual(port, busy.port);
    assert.equal((await readFile(join(data, PORT_FILE), 'utf8')).trim(), String(port));
  });

  it('refuses, saying what to do, when a configured or saved port is in use', async () => {
    await assert.rejects(
      choosePort(await fresh(), busy.port),
      new RegExp(`Port ${busy.port} \\(IMAGELAKE_POSTGRES_PORT\\) .* is in use by another program`),
    );
    const data = await fresh();
    await writeFile(join(data, PORT_FILE), `${busy.port}\n`);
    await assert.rejects(
      choosePort(data, undefined),
      /the port saved in .*postgres\.port.*IMAGELAKE_POSTGRES_PORT/,
    );
  });

  it('takes any free port at every start when configured 0, and saves nothing', async () => {
    const data = await fresh();
    const { port, picked } = await choosePort(data, 0);
    assert.ok(port > 0);
    assert.equal(picked, true, 'a start that loses the port to another process picks again');
    await assert.rejects(readFile(join(data, PORT_FILE)), { code: 'ENOENT' });
  });

  it('starts on another port when a picked one is lost to another process, and says so', async () => {
    // A real server, as PostgreSQL binds its port: the first port is taken before it binds.
    const tried: number[] = [];
    const moves: Array<[number, number]> = [];
    const servers: Server[] = [];
    const start = async (port: number) => {
      tried.push(port);
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
      servers.push(server);
    };
    const free = await occupy();
    free.server.close();
    const port = await startOnPort(
      { port: busy.port, picked: true },
      start,
      async () => free.port,
      async (p, n) => {
        moves.push([p, n]);
      },
    );
    for (const server of servers) server.close();
    assert.equal(port, free.port);
    assert.deepEqual(tried, [busy.port, free.port]);
    assert.deepEqual(moves, [[free.port, 1]]);
  });

  it('never moves a configured or saved port, and gives up after its tries', async () => {
    const failing = async () => {
      throw new Error('address in use');
    };
    let picks = 0;
    const pick = async () => ++picks + 40000;
    await assert.rejects(
      startOnPort({ port: busy.port, picked: false }, failing, pick, async () => {}),
      /in use/,
    );
    assert.equal(picks, 0, 'a configured or saved port is not moved');
    await assert.rejects(
      startOnPort({ port: busy.port, picked: true }, failing, pick, async () => {}, 3),
      /in use/,
    );
    assert.equal(picks, 2, 'three starts in all');
  });
});
