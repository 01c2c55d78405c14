import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql, type Transaction } from 'kysely';
import pino from 'pino';
import { connect, type Db } from '../../src/catalog/database.ts';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import type { Database } from '../../src/catalog/schema.ts';

// The catalog's statements prepared once per session (src/catalog/prepared-statements.ts), on a
// PostgreSQL of the test's own: which are named, and what happens when a table changes under them.
let root: string;
let postgres: EmbeddedDatabase;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-prepared-'));
  postgres = await startEmbeddedPostgres(root, pino({ level: 'silent' }), 0);
});

after(async () => {
  await postgres?.stop();
  await rm(root, { recursive: true, force: true });
});

/** The statements this session has prepared under a name of the catalog's, by their text. */
async function prepared(db: Db): Promise<string[]> {
  const { rows } = await sql<{ statement: string }>`
    select statement from pg_prepared_statements where name like 'il\_%'`.execute(db);
  return rows.map((r) => r.statement);
}

describe('prepared statements', () => {
  it('names a statement from its second run, once per session', async () => {
    const { db } = connect(postgres.url, { max: 1 });
    try {
      const lookup = () => sql<{ n: number }>`select ${41}::int + 1 as n`.execute(db);
      assert.equal((await lookup()).rows[0]!.n, 42);
      const isLookup = (statement: string) => statement.includes('+ 1 as n');
      assert.equal((await prepared(db)).filter(isLookup).length, 0, 'a statement seen once runs unnamed');
      for (let i = 0; i < 7; i++) assert.equal((await lookup()).rows[0]!.n, 42);
      assert.equal((await prepared(db)).filter(isLookup).length, 1, 'then it is prepared once');
    } finally {
      await db.destroy();
    }
  });

  it('prepares nothing when turned off', async () => {
    const { db } = connect(postgres.url, { max: 1, prepared: false });
    try {
      for (let i = 0; i < 3; i++) await sql`select ${i}::int as n`.execute(db);
      assert.deepEqual(await prepared(db), []);
    } finally {
      await db.destroy();
    }
  });

  it('goes on when a migration changes a table under a prepared statement', async () => {
    const { db } = connect(postgres.url, { max: 1 });
    const other = connect(postgres.url, { max: 1, prepared: false }).db;
    try {
      await sql`create table things (id int primary key, name text)`.execute(other);
      await sql`insert into things values (1, 'one')`.execute(other);
      const outside = () => sql<Record<string, unknown>>`select * from things where id = ${1}`.execute(db);
      const inside = (trx: Transaction<Database>) =>
        sql<Record<string, unknown>>`select * from things where id >= ${1}`.execute(trx);
      for (let i = 0; i < 3; i++) {
        await outside();
        await db.transaction().execute(inside);
      }
      // Another process migrates: both prepared statements' results change shape.
      await sql`alter table things add column size int`.execute(other);
      // Outside a transaction, the statement runs again unnamed at once.
      assert.deepEqual(Object.keys((await outside()).rows[0]!).sort(), ['id', 'name', 'size']);
      // Inside one, the run that meets the change fails (the transaction is aborted); the next works.
      await assert.rejects(db.transaction().execute(inside), /cached plan must not change result type/);
      const retried = await db.transaction().execute(inside);
      assert.deepEqual(Object.keys(retried.rows[0]!).sort(), ['id', 'name', 'size']);
    } finally {
      await db.destroy();
      await other.destroy();
    }
  });
});
