import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { ANALYST_ROLE } from '../../src/analytics/analyst-role.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, settled, startTestServer, type TestServer, upload } from './harness.ts';

// The locks the platform's compliance work takes (src/retention/scheduler.ts, receipts.ts).
const SCHEDULER_LOCK = 0x1a6e1a;
const RECEIPT_LOCK = 0x1a6e2b;
const HUGE = "select repeat('x', 500000) from generate_series(1, 100000)";

describe('analyst SQL cannot take the platform down or stop compliance work', () => {
  let t: TestServer;
  let analystKey: string;
  let otherAnalystKey: string;
  let customer: { id: string; apiKey: string };
  const ask = (query: string, format: 'json' | 'csv' = 'json', key = analystKey) =>
    api(t.url, key, 'POST', '/v1/sql', { query, format });

  before(async () => {
    t = await startTestServer(
      { IMAGELAKE_SQL_CONCURRENCY: '1', IMAGELAKE_SQL_MAX_BYTES: '4MiB', IMAGELAKE_SQL_TIMEOUT: '20s' },
      ['api', 'worker'],
    );
    analystKey = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'bi' })).body.apiKey;
    otherAnalystKey = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'other' })).body.apiKey;
    customer = await createCustomer(t.url, 'Acme');
  });
  after(() => t?.stop());

  it('refuses a result over the byte cap, as JSON and CSV, however its bytes come', async () => {
    for (const [query, format] of [
      [HUGE, 'json'],
      [HUGE, 'csv'],
      // One row larger than the cap.
      ["select repeat('x', 50000000) as big", 'json'],
      // Small in the database, large as JSON: long column names repeated on every row.
      [
        `select ${Array.from({ length: 60 }, (_, i) => `1 as "${'c'.repeat(60)}${i}"`).join(', ')} from generate_series(1, 10000)`,
        'json',
      ],
    ] as const) {
      const r = await ask(query, format);
      assert.equal(r.status, 400, `${query.slice(0, 60)}: ${JSON.stringify(r.body).slice(0, 300)}`);
      assert.equal(r.body.error.code, 'SQL_RESULT_TOO_LARGE');
      assert.match(r.body.error.message, /LIMIT/);
    }
    // Under the cap, the same shapes answer.
    const fits = await ask("select repeat('x', 1000) as x from generate_series(1, 100)", 'csv');
    assert.equal(fits.status, 200);
    assert.equal(fits.body.split('\n').length, 102);
    assert.equal((await api(t.url, ADMIN, 'GET', '/healthz')).status, 200);
  });

  it("keeps the guard whole: a query cannot close the wrapper's parentheses, a trailing comment is only a comment", async () => {
    const breakout = await ask(
      'select 1) "imagelake analyst row") guarded where true or (select repeat(\'x\', 50000000) from (select 1',
    );
    assert.equal(breakout.status, 400);
    assert.equal(breakout.body.error.code, 'SQL_INVALID');
    for (const query of [
      'select 1 as one -- the end',
      'select 1 as one; -- the end\n',
      'select 1 as one;\n',
    ]) {
      const commented = await ask(query);
      assert.equal(commented.status, 200, `${query}: ${JSON.stringify(commented.body)}`);
      assert.deepEqual(commented.body.rows, [{ one: 1 }]);
    }
    const ordered = await ask('select g from generate_series(1, 5) g order by g desc');
    assert.deepEqual(
      ordered.body.rows.map((r: { g: number }) => r.g),
      [5, 4, 3, 2, 1],
    );
  });

  it('refuses advisory locks and other side-effect functions, at the endpoint and on the BI connection', async () => {
    for (const query of [
      `select pg_try_advisory_lock(${SCHEDULER_LOCK})`,
      `select pg_advisory_lock(${RECEIPT_LOCK})`,
      `select pg_try_advisory_xact_lock(${SCHEDULER_LOCK})`,
      `select pg_advisory_lock_shared(1, 2)`,
      "select set_config('work_mem', '8GB', false)",
      "select pg_notify('imagelake_jobs', 'x')",
      'select pg_cancel_backend(pg_backend_pid())',
      'select lo_create(0)',
    ]) {
      const r = await ask(query);
      assert.equal(r.status, 403, `${query}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'SQL_FORBIDDEN', query);
      assert.match(r.body.error.message, /permission denied for function/, query);
    }
    const { body } = await api(t.url, ADMIN, 'GET', '/v1/analytics/connection');
    const client = new pg.Client({ connectionString: body.url });
    await client.connect();
    try {
      await assert.rejects(
        client.query('select pg_try_advisory_lock($1)', [SCHEDULER_LOCK]),
        /permission denied for function/,
      );
      // Nor can it switch to read-write and fill the disk with a temporary table.
      await client.query('begin read write');
      await assert.rejects(
        client.query('create temp table mine as select 1'),
        /permission denied to create temporary tables/,
      );
      await client.query('rollback');
      // Its memory is bounded by the role's settings.
      assert.equal((await client.query('show work_mem')).rows[0].work_mem, '32MB');
      assert.equal((await client.query('show temp_file_limit')).rows[0].temp_file_limit, '1GB');
    } finally {
      await client.end();
    }
  });

  it('ends every analyst session with nothing held, even where a lock function was granted', async () => {
    // An operator's database could leave the functions executable (the migration needs a
    // superuser): the session reset must still release whatever a query took.
    await sql`grant execute on function pg_try_advisory_lock(bigint) to ${sql.id(ANALYST_ROLE)}`.execute(
      t.server.db,
    );
    try {
      const taken = await ask(`select pg_try_advisory_lock(${SCHEDULER_LOCK}) as locked`);
      assert.equal(taken.status, 200, JSON.stringify(taken.body));
      assert.deepEqual(taken.body.rows, [{ locked: true }]);
      const held = await sql<{ n: number }>`
        select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and a.usename = ${ANALYST_ROLE}`.execute(t.server.db);
      assert.equal(held.rows[0]!.n, 0, 'no analyst session holds an advisory lock');
      const purge = await api(t.url, ADMIN, 'POST', '/v1/purges');
      assert.equal(purge.status, 200, JSON.stringify(purge.body));
    } finally {
      await sql`revoke execute on function pg_try_advisory_lock(bigint) from ${sql.id(ANALYST_ROLE)}`.execute(
        t.server.db,
      );
    }
  });

  it('keeps purges, exports and erasures running while an analyst repeats the lock and the huge query', async () => {
    const id = (await upload(t.url, customer.apiKey, await jpeg({ seed: 7 }))).body.id;
    await settled(t.url, customer.apiKey, id);
    let attacking = true;
    const codes = new Set<string>();
    const attack = async (key: string, queries: string[]) => {
      while (attacking)
        for (const query of queries) {
          const r = await ask(query, 'csv', key);
          codes.add(r.status === 200 ? 'OK' : r.body.error.code);
        }
    };
    const attackers = [
      attack(analystKey, [`select pg_try_advisory_lock(${SCHEDULER_LOCK})`, HUGE]),
      attack(otherAnalystKey, [`select pg_advisory_lock(${RECEIPT_LOCK})`, HUGE]),
    ];
    try {
      for (let round = 0; round < 3; round++) {
        const purge = await api(t.url, ADMIN, 'POST', '/v1/purges');
        assert.equal(purge.status, 200, `purge: ${JSON.stringify(purge.body)}`);
        const exported = await api(t.url, ADMIN, 'POST', '/v1/analytics/export');
        assert.equal(exported.status, 200, `export: ${JSON.stringify(exported.body)}`);
      }
      const erased = await api(t.url, customer.apiKey, 'DELETE', `/v1/images/${id}`);
      assert.equal(erased.status, 200, `erasure: ${JSON.stringify(erased.body)}`);
      assert.equal((await api(t.url, customer.apiKey, 'GET', `/v1/images/${id}`)).status, 404);
      assert.equal((await api(t.url, ADMIN, 'GET', '/healthz')).status, 200);
    } finally {
      attacking = false;
      await Promise.all(attackers);
    }
    assert.ok(codes.has('SQL_FORBIDDEN') && codes.has('SQL_RESULT_TOO_LARGE'), [...codes].join(', '));
    assert.ok(!codes.has('INTERNAL'), [...codes].join(', '));
  });

  it('runs at most the configured queries of one key at once; other keys still run', async () => {
    const slow = ask('select pg_sleep(3) as slept');
    // Wait until the first query is visibly running in the database (its cursor is being read), then ask again.
    for (let tries = 0; ; tries++) {
      assert.ok(tries < 500, 'the first query never ran');
      const running = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where usename = ${ANALYST_ROLE} and query like 'fetch forward%' and state = 'active'`.execute(
        t.server.db,
      );
      if (running.rows[0]!.n > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = await ask('select 1 as one');
    assert.equal(second.status, 429, JSON.stringify(second.body));
    assert.equal(second.body.error.code, 'SQL_BUSY');
    const other = await ask('select 1 as one', 'json', otherAnalystKey);
    assert.equal(other.status, 200, JSON.stringify(other.body));
    assert.equal((await slow).status, 200);
    assert.equal((await ask('select 1 as one')).status, 200, 'the slot is free again');
  });

  it('answers query errors with SQL_INVALID and bigints and numerics as JSON numbers', async () => {
    for (const [query, sqlstate] of [
      ['select (select g from generate_series(1, 2) g)', '21000'],
      ["select repeat('x', 2000000000)", '54000'],
      ['select array_fill(1, array[200000000])', '54000'],
    ]) {
      const r = await ask(query!);
      assert.equal(r.status, 400, `${sqlstate} ${query}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'SQL_INVALID', query);
    }
    const response = await fetch(`${t.url}/v1/sql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${analystKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        query:
          "select count(*) as count, 9007199254740993::bigint as big, 12345678901234567890.50::numeric as exact, 'NaN'::numeric as nan from generate_series(1, 18)",
      }),
    });
    const text = await response.text();
    assert.match(text, /"count":18,"big":9007199254740993,"exact":12345678901234567890\.50,"nan":"NaN"/);
    const csv = await ask('select count(*) as count from generate_series(1, 18)', 'csv');
    assert.equal(csv.body, 'count\n18\n');
  });

  it('names every table of the analytics schema when it refuses another', async () => {
    const r = await ask('select * from public.images');
    assert.equal(r.body.error.code, 'SQL_FORBIDDEN');
    const { body } = await api(t.url, ADMIN, 'GET', '/v1/analytics/schema');
    const tables = Object.keys(body.tables);
    assert.ok(tables.length >= 8, tables.join(', '));
    for (const table of tables) assert.ok(r.body.error.message.includes(`analytics.${table}`), table);
  });
});
