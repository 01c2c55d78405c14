// Scale-out: processing throughput with 1, 2 and 4 worker processes sharing one PostgreSQL and one
// S3 server, and the lake's PUT and GET rates on S3 beside the local folder, in one run.
//
//   npm run bench:scale -- [FOLDER] [--limit 40] [--workers 1,2,4]
//
// The S3 server is the one in IMAGELAKE_S3_ENDPOINT (with AWS_* credentials), or the project's MinIO.
// On this machine's 2 cores more worker processes share the same CPUs: the table shows what a
// second machine would add only where the speed-up is below the process count.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import pino from 'pino';
import { connect } from '../src/catalog/database.ts';
import { startEmbeddedPostgres } from '../src/catalog/embedded.ts';
import { loadConfig } from '../src/config/config.ts';
import { FsLake } from '../src/lake/fs.ts';
import type { Lake } from '../src/lake/port.ts';
import { S3Lake } from '../src/lake/s3.ts';
import { startServer } from '../src/server.ts';
import { s3Settings } from './s3-settings.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { limit: { type: 'string' }, workers: { type: 'string' } },
});
const LIMIT = Number(values.limit ?? 40);
const WORKERS = (values.workers ?? '1,2,4').split(',').map(Number);
const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

const s3env = s3Settings();
for (const [k, v] of Object.entries(s3env)) if (k.startsWith('AWS_')) process.env[k] = v;

const folder =
  positionals[0] ??
  execFileSync('bash', [fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url))], {
    encoding: 'utf8',
  }).trim();
const list = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? list(join(dir, e.name)) : /\.(jpe?g|png)$/i.test(e.name) ? [join(dir, e.name)] : [],
  );
const files = list(folder).sort().slice(0, LIMIT);
const totalBytes = files.reduce((s, f) => s + statSync(f).size, 0);

const root = await mkdtemp(join(tmpdir(), 'imagelake-bench-scale-'));
const postgres = await startEmbeddedPostgres(join(root, 'pg'), pino({ level: 'silent' }));
const { db } = connect(postgres.url);
const admin = 'il_admin_bench';

try {
  console.log(
    `${files.length} images, ${(totalBytes / 1e6).toFixed(0)} MB; PostgreSQL and the S3 lake (${s3env.IMAGELAKE_S3_ENDPOINT}) shared by every process`,
  );
  const scaling: Record<string, Record<string, number>> = {};
  let single = 0;
  for (const workers of WORKERS) {
    const env = {
      ...s3env,
      IMAGELAKE_DATABASE_URL: postgres.url,
      IMAGELAKE_LAKE_URL: `s3://imagelake/bench-${randomUUID()}`,
      IMAGELAKE_ADMIN_TOKEN: admin,
      IMAGELAKE_DATA_DIR: join(root, 'unused'),
      IMAGELAKE_POLL_INTERVAL: '100ms',
      IMAGELAKE_LOG_LEVEL: 'warn',
      IMAGELAKE_MAX_QUEUE_DEPTH: '100000',
    };
    // Land everything first, so the timing covers processing alone.
    const api = await startServer(loadConfig({ ...env, IMAGELAKE_PORT: '0' }), {
      roles: ['api'],
      log: pino({ level: 'warn' }),
    });
    const customer = (await (
      await fetch(`${api.url}/v1/customers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: '{"name":"bench"}',
      })
    ).json()) as { apiKey: string };
    for (const file of files) {
      const r = await fetch(`${api.url}/v1/images`, {
        method: 'POST',
        headers: { authorization: `Bearer ${customer.apiKey}` },
        body: readFileSync(file),
      });
      if (r.status !== 202) throw new Error(`${file}: ${r.status}`);
    }
    await api.stop();

    const started = performance.now();
    const children: ChildProcess[] = Array.from({ length: workers }, () =>
      spawn(process.execPath, [MAIN, 'serve', '--roles', 'worker'], {
        // Each worker serves its health and metrics on a port of its own.
        env: { ...process.env, ...env, IMAGELAKE_PORT: '0' },
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
    );
    for (;;) {
      const left = Number((await sql<{ n: string }>`select count(*) as n from jobs`.execute(db)).rows[0]!.n);
      if (left === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (performance.now() - started) / 1000;
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => c.once('exit', r))));
    const rate = files.length / seconds;
    if (workers === WORKERS[0]) single = rate;
    scaling[`${workers} worker process${workers > 1 ? 'es' : ''}`] = {
      seconds: +seconds.toFixed(2),
      'images/s': +rate.toFixed(2),
      'MB/s': +(totalBytes / 1e6 / seconds).toFixed(1),
      'speed-up': +(rate / single).toFixed(2),
    };
  }
  console.table(scaling);

  // The lake alone: S3 against the local folder, the same objects, eight at a time.
  const rates: Record<string, Record<string, number>> = {};
  for (const size of [100_000, 2_000_000]) {
    const body = randomBytes(size);
    const count = size < 1e6 ? 200 : 40;
    const measure = async (lake: Lake) => {
      const keys = Array.from({ length: count }, (_, i) => `rate/${size}/${i}`);
      const run = async (work: (key: string) => Promise<unknown>) => {
        const started = performance.now();
        let next = 0;
        await Promise.all(
          Array.from({ length: 8 }, async () => {
            while (next < keys.length) await work(keys[next++]!);
          }),
        );
        return count / ((performance.now() - started) / 1000);
      };
      const put = await run((key) => lake.put(key, body));
      const get = await run((key) => lake.getBuffer(key));
      await lake.deleteMany(keys);
      return { put, get };
    };
    const s3 = await measure(
      S3Lake.fromUrl(`s3://imagelake/rates-${randomUUID()}`, { ...process.env, ...s3env }),
    );
    const fs = await measure(new FsLake(join(root, 'fs-lake')));
    const label = `${size / 1000} KB objects`;
    rates[`${label}, S3`] = {
      'PUT/s': +s3.put.toFixed(0),
      'GET/s': +s3.get.toFixed(0),
      'PUT MB/s': +((s3.put * size) / 1e6).toFixed(1),
      'GET MB/s': +((s3.get * size) / 1e6).toFixed(1),
    };
    rates[`${label}, folder`] = {
      'PUT/s': +fs.put.toFixed(0),
      'GET/s': +fs.get.toFixed(0),
      'PUT MB/s': +((fs.put * size) / 1e6).toFixed(1),
      'GET MB/s': +((fs.get * size) / 1e6).toFixed(1),
    };
    rates[`${label}, S3 / folder`] = {
      'PUT/s': +(s3.put / fs.put).toFixed(2),
      'GET/s': +(s3.get / fs.get).toFixed(2),
      'PUT MB/s': 0,
      'GET MB/s': 0,
    };
  }
  console.table(rates);
} finally {
  await db.destroy();
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
