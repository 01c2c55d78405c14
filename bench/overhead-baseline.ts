// The overhead benchmark's baseline, in a process of its own so its CPU is measured like the
// server's: a bare node:http server that reads each upload, writes it to a file of its own and
// fsyncs it, inserts one row for it in PostgreSQL (an embedded one, started here like the
// platform's), then answers 202. The least any service that keeps uploads durably and lists them
// has to do. Prints its URL on stdout once it listens.
//
//   node bench/overhead-baseline.ts DIR
import { randomUUID } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { startEmbeddedPostgres } from '../src/catalog/embedded.ts';

const dir = process.argv[2]!;
const files = join(dir, 'files');
await mkdir(files, { recursive: true });
const postgres = await startEmbeddedPostgres(join(dir, 'pg'), pino({ level: 'silent' }));
const pool = new pg.Pool({ connectionString: postgres.url, max: 8 });
await pool.query(
  'create table if not exists uploads (id uuid primary key, bytes int not null, received_at timestamptz not null default now())',
);

const server = createServer(async (request, response) => {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  const id = randomUUID();
  const handle = await open(join(files, id), 'wx');
  await handle.writeFile(body);
  await handle.sync();
  await handle.close();
  await pool.query('insert into uploads (id, bytes) values ($1, $2)', [id, body.length]);
  response.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ id }));
});
server.listen(0, '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
});
process.on('SIGTERM', async () => {
  server.close();
  await pool.end();
  await postgres.stop();
  process.exit(0);
});
