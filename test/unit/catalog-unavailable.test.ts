import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import pg from 'pg';
import { connect } from '../../src/catalog/database.ts';
import { isCatalogUnavailable } from '../../src/catalog/unavailable.ts';

/** A port nothing listens on: taken, then given back. */
async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function databaseError(code: string, message: string): pg.DatabaseError {
  const error = new pg.DatabaseError(message, 0, 'error');
  error.severity = 'FATAL';
  error.code = code;
  return error;
}

describe('catalog outages are told apart from other failures', () => {
  it('a catalog that refuses connections is unavailable, through the Kysely pool and through pool.query', async () => {
    const { db, pool } = connect(`postgres://u:p@127.0.0.1:${await closedPort()}/x`);
    try {
      const viaKysely = await db
        .selectFrom('images')
        .selectAll()
        .execute()
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      assert.equal((viaKysely as { code?: string }).code, 'ECONNREFUSED');
      assert.equal(isCatalogUnavailable(viaKysely), true);
      const viaPool = await pool.query('select 1').then(
        () => undefined,
        (error: unknown) => error,
      );
      assert.equal(isCatalogUnavailable(viaPool), true);
    } finally {
      await db.destroy();
    }
  });

  it('the same network error from elsewhere (the lake) is not the catalog', () => {
    const error = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9000'), {
      code: 'ECONNREFUSED',
      syscall: 'connect',
    });
    assert.equal(isCatalogUnavailable(error), false);
  });

  it('PostgreSQL shutting down, starting up or out of connections is unavailable', () => {
    for (const code of ['57P01', '57P02', '57P03', '53300', '08006', '08001']) {
      assert.equal(isCatalogUnavailable(databaseError(code, 'x')), true, code);
    }
    assert.equal(isCatalogUnavailable(new Error('Connection terminated unexpectedly')), true);
    assert.equal(
      isCatalogUnavailable(new Error('wrapped', { cause: new Error('Connection terminated unexpectedly') })),
      true,
    );
  });

  it('a query that fails on its own merits is not an outage', () => {
    for (const [code, message] of [
      ['23505', 'duplicate key value violates unique constraint'],
      ['42P01', 'relation "nope" does not exist'],
      ['57014', 'canceling statement due to statement timeout'],
    ] as const) {
      assert.equal(isCatalogUnavailable(databaseError(code, message)), false, code);
    }
    assert.equal(isCatalogUnavailable(new Error('boom')), false);
    assert.equal(isCatalogUnavailable(undefined), false);
  });
});
