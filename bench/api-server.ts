// The api role alone, for benchmarks of the ingest and query paths: on the embedded PostgreSQL in a
// temporary data dir (removed by stop()), with no worker, so nothing else competes for the cores.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../src/config/config.ts';
import { type RunningServer, startServer } from '../src/server.ts';

export const BENCH_ADMIN = 'il_admin_bench-token-0123456789abcdefghijklmnopqrstuvwxyz';

export async function startApiServer(
  name: string,
  env: Record<string, string> = {},
): Promise<{ server: RunningServer; url: string; stop: () => Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), `imagelake-bench-${name}-`));
  const server = await startServer(
    loadConfig({
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_PORT: '0',
      IMAGELAKE_POSTGRES_PORT: '0',
      IMAGELAKE_ADMIN_TOKEN: BENCH_ADMIN,
      ...env,
    }),
    { roles: ['api'], log: pino({ level: 'silent' }) },
  );
  return {
    server,
    url: server.url!,
    stop: async () => {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
