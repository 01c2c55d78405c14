import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFile, chmod, chown, copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pino from 'pino';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { openCatalog } from '../../src/catalog/open.ts';
import { loadConfig } from '../../src/config/config.ts';
import { cli, freePort } from './harness.ts';

// A PostgreSQL of the test's own that takes TLS connections only, with a certificate signed by a CA
// made here: the catalog is reachable only by a process that trusts that CA (IMAGELAKE_DATABASE_TLS_CA).
let root: string;
let postgres: EmbeddedDatabase | undefined;
let url: string;
let ca: string;
let otherCa: string;
const silent = pino({ level: 'silent' });

function openssl(cwd: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** A self-signed CA (ca.key, ca.crt) in dir, valid for two days. */
async function makeCa(dir: string, name: string): Promise<void> {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-subj',
    `/CN=${name}`,
    '-days',
    '2',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=keyCertSign,cRLSign',
  );
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-tls-'));
  const certs = join(root, 'certs');
  await mkdir(certs);
  await makeCa(certs, 'imagelake test CA');
  openssl(
    certs,
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  );
  await writeFile(join(certs, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    certs,
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.crt',
    '-days',
    '2',
    '-extfile',
    'san.ext',
  );
  ca = join(certs, 'ca.crt');
  const other = join(root, 'other');
  await mkdir(other);
  await makeCa(other, 'another CA');
  otherCa = join(other, 'ca.crt');

  // Made plain first (the database and its password), then switched to TLS only.
  const pgRoot = join(root, 'pg');
  const port = await freePort();
  await (await startEmbeddedPostgres(pgRoot, silent, port)).stop();
  const cluster = join(pgRoot, 'postgres');
  const owner = await stat(cluster);
  for (const file of ['server.crt', 'server.key']) {
    await copyFile(join(certs, file), join(cluster, file));
    await chown(join(cluster, file), owner.uid, owner.gid);
    await chmod(join(cluster, file), 0o600);
  }
  await appendFile(join(cluster, 'postgresql.conf'), '\nssl = on\n');
  // No hostnossl line: a connection without TLS matches no entry and is refused.
  await writeFile(
    join(cluster, 'pg_hba.conf'),
    'local all all password\nhostssl all all 127.0.0.1/32 password\nhostssl all all ::1/128 password\n',
  );
  postgres = await startEmbeddedPostgres(pgRoot, silent, port);
  url = postgres.url;
});

after(async () => {
  await postgres?.stop();
  await rm(root, { recursive: true, force: true });
});

/** The settings of an imagelake on that catalog, with a lake folder of its own. */
const settings = (extra: Record<string, string> = {}) => ({
  IMAGELAKE_DATA_DIR: join(root, 'data'),
  IMAGELAKE_LAKE_URL: '',
  IMAGELAKE_DATABASE_URL: url,
  ...extra,
});

describe('a catalog that takes TLS only', () => {
  it('serve opens it with the configured CA, and the catalog gets the statement timeout', async () => {
    const config = loadConfig(
      settings({ IMAGELAKE_DATABASE_TLS_CA: ca, IMAGELAKE_DATABASE_STATEMENT_TIMEOUT: '7s' }),
    );
    const catalog = await openCatalog(config, { log: silent, purpose: 'serve' });
    try {
      await catalog.check();
      const { rows } = await sql<{ ssl: boolean; timeout: string }>`
        select (select ssl from pg_stat_ssl where pid = pg_backend_pid()) as ssl,
               current_setting('statement_timeout') as timeout`.execute(catalog.db);
      assert.deepEqual(rows[0], { ssl: true, timeout: '7s' });
    } finally {
      await catalog.close();
    }
  });

  it('the CLI: retention purge and audit connect with the configured CA', async () => {
    const env = settings({ IMAGELAKE_DATABASE_TLS_CA: ca });
    const audit = await cli(['retention', 'audit', '--allow-empty'], env);
    assert.equal(audit.code, 0, audit.out);
    assert.match(audit.out, /clean/);
    const purge = await cli(['retention', 'purge', '--allow-empty'], env);
    assert.equal(purge.code, 0, purge.out);
    const receipts = await cli(['retention', 'verify-receipts', '--allow-empty'], env);
    assert.equal(receipts.code, 0, receipts.out);
    assert.match(receipts.out, /chain intact/);
  });

  it('the CLI: without the CA, or with another, the catalog is not reached', async () => {
    const plain = await cli(['retention', 'audit', '--allow-empty'], settings());
    assert.notEqual(plain.code, 0, plain.out);
    assert.match(plain.out, /no encryption/);
    const wrong = await cli(
      ['retention', 'purge', '--allow-empty'],
      settings({ IMAGELAKE_DATABASE_TLS_CA: otherCa }),
    );
    assert.notEqual(wrong.code, 0, wrong.out);
    assert.match(wrong.out, /certificate/);
  });
});
