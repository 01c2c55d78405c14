// `imagelake serve` in a child process of its own, on a data dir of the benchmark's: its process
// tree (node and the embedded PostgreSQL) is then the server alone, to measure apart from the
// client that drives it.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

/**
 * Starts serve with these settings on a random port (node flags in `args`; every role unless
 * `roles` names some), and waits until it answers /readyz.
 */
export async function startServe(
  dataDir: string,
  admin: string,
  env: Record<string, string> = {},
  args: string[] = [],
  roles: string[] = [],
): Promise<{ child: ChildProcess; url: string }> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const serveArgs = roles.length > 0 ? ['serve', '--roles', roles.join(',')] : ['serve'];
  const child = spawn(process.execPath, [...args, MAIN, ...serveArgs], {
    env: {
      ...process.env,
      // As `npm start` and the container image start it (README: Production).
      MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2',
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_PORT: String(port),
      IMAGELAKE_POSTGRES_PORT: '0',
      IMAGELAKE_ADMIN_TOKEN: admin,
      IMAGELAKE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (
      await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { child, url };
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error('the server did not become ready');
}

/** SIGTERM, and wait for the process to exit. */
export async function stopServe(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
