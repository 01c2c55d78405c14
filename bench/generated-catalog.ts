// What the analytics benchmarks share: a catalog of their own to fill with generated data, a timed
// step, and the customers the generated facts belong to.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pino from 'pino';
import type { Db } from '../src/catalog/database.ts';
import { loadConfig } from '../src/config/config.ts';
import { startServer } from '../src/server.ts';

/** An embedded catalog in a temporary folder; `close` stops it and removes the folder. */
export async function generatedCatalog(name: string) {
  const dataDir = await mkdtemp(join(tmpdir(), `imagelake-bench-${name}-`));
  const server = await startServer(
    loadConfig({
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_ADMIN_TOKEN: 'il_admin_bench',
      // Generating millions of rows in one statement takes minutes; the server's 60 s cap is for requests.
      IMAGELAKE_DATABASE_STATEMENT_TIMEOUT: '1h',
    }),
    { roles: [], log: pino({ level: 'warn' }) },
  );
  return {
    db: server.db,
    dataDir,
    close: async () => {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs one stage of the setup and prints how long it took. */
export async function step(label: string, work: () => Promise<unknown>): Promise<void> {
  const started = performance.now();
  process.stdout.write(`${label}... `);
  await work();
  console.log(`${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** `count` customers, and a temporary table `ids` numbering them 1..count for the generators to join. */
export async function seedCustomers(db: Db, count: number): Promise<void> {
  await step(`${count} customers`, async () => {
    await sql`insert into customers (id, name) select gen_random_uuid(), 'customer ' || i from generate_series(1, ${count}) i`.execute(
      db,
    );
    await sql`create temporary table ids as select row_number() over () as n, id from customers`.execute(db);
  });
}
