import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyLimiter } from '../../src/analytics/key-limiter.ts';
import { sqlError } from '../../src/analytics/sql.ts';
import { AppError } from '../../src/errors.ts';

const pgError = (code: string) => Object.assign(new Error(`pg says ${code}`), { code });

describe('analyst SQL errors', () => {
  it('answers errors of the query itself with SQL_INVALID (400), keeping the database message', () => {
    // 21000: a subquery gave more than one row; 54000: past a program limit; 25001: a transaction
    // setting after the first query; 42601: syntax; 22012: division by zero.
    for (const code of ['21000', '54000', '54001', '25001', '42601', '22012', '0A000', '2202E']) {
      const mapped = sqlError(pgError(code));
      assert.ok(mapped instanceof AppError, code);
      assert.equal(mapped.code, 'SQL_INVALID', code);
      assert.equal(mapped.status, 400, code);
      assert.match(mapped.message, new RegExp(`pg says ${code}`));
    }
  });

  it('gives limits, refusals and the result cap their own codes', () => {
    const codes: Array<[string, string]> = [
      ['IL413', 'SQL_RESULT_TOO_LARGE'],
      ['53400', 'SQL_RESOURCE_LIMIT'],
      ['53200', 'SQL_RESOURCE_LIMIT'],
      ['42501', 'SQL_FORBIDDEN'],
      ['57014', 'SQL_TIMEOUT'],
      ['25006', 'SQL_WRITE_REFUSED'],
    ];
    for (const [sqlstate, code] of codes) assert.equal((sqlError(pgError(sqlstate)) as AppError).code, code);
  });

  it('leaves failures of the connection or the server as they are (a 5xx, logged)', () => {
    for (const code of ['08006', '57P01', 'XX000', '58030']) {
      const error = pgError(code);
      assert.equal(sqlError(error), error, code);
    }
    const dropped = new Error('Connection terminated unexpectedly');
    assert.equal(sqlError(dropped), dropped);
  });
});

describe('the per-key limit of analyst queries', () => {
  it('refuses a key over its limit with SQL_BUSY, frees the slot when a query ends, and never counts other keys', async () => {
    const limiter = new KeyLimiter(1);
    let release!: () => void;
    const first = limiter.run('a', () => new Promise<string>((r) => (release = () => r('done'))));
    await assert.rejects(
      limiter.run('a', async () => 'second'),
      (e: AppError) => e.code === 'SQL_BUSY',
    );
    assert.equal(await limiter.run('b', async () => 'other key'), 'other key');
    release();
    assert.equal(await first, 'done');
    await assert.rejects(
      limiter.run('a', async () => {
        throw new Error('query failed');
      }),
      /query failed/,
    );
    assert.equal(await limiter.run('a', async () => 'again'), 'again', 'a failed query frees its slot too');
  });
});
