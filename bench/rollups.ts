// Outcomes recorded per second by 1, 2, 4 and 8 worker processes at once, all for one customer on
// one day (the hottest case: every outcome adds to the same rollup, usage and totals keys), with
// the counters kept in slots (catalog/counter-slots.ts) and, as the baseline in the same run, with
// every writer pinned to one slot: one row per key, as before the slots.
//
//   npm run bench:rollups -- [--workers 1,2,4,8] [--seconds 4] [--rounds 1]
//
// Each process (bench/rollups-worker.ts) records trivial outcomes (failed, no processors) through
// processing/outcome.ts, one transaction after another. While they run, PostgreSQL's client
// backends are sampled every 10 ms from pg_stat_activity and counted by what they wait on: Lock
// (transactionid, tuple: another transaction holds the row), LWLock, IO (WAL flush), Client (waiting
// for the process's next statement: the worker processes are the bottleneck), or CPU (running, no
// wait event). Beside them, the CPU milliseconds per outcome of PostgreSQL and of the node
// processes, and how many cores were busy. Then the rollups are checked against the facts, exact.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { runningEmbeddedUrl } from '../src/catalog/embedded.ts';
import type { ClaimedJob } from '../src/catalog/queue.ts';
import { generatedCatalog, step } from './generated-catalog.ts';
import { cpuByKindBetween, namedCpuMs, processTree } from './process-tree.ts';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '1,2,4,8' },
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '1' },
  },
});
const WORKERS = values.workers.split(',').map(Number);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const PER_PROCESS = 4000;

const catalog = await generatedCatalog('rollups');
const { db } = catalog;
const url = runningEmbeddedUrl(catalog.dataDir)!;
const children: ChildProcess[] = [];

const ask = (child: ChildProcess, message: object) =>
  new Promise<{ done?: number; ms?: number }>((resolve, reject) => {
    const exited = (code: number | null) => reject(new Error(`a worker process exited (${code})`));
    child.once('exit', exited);
    child.once('message', (answer: { done?: number; ms?: number }) => {
      child.off('exit', exited);
      resolve(answer);
    });
    child.send(message);
  });

/** `count` images of the customer, processing, each with its job claimed under a lease. */
async function claimedJobs(customerId: string, count: number): Promise<ClaimedJob[]> {
  const { rows } = await sql<{ id: string; image_id: string; lease_token: string; created_at: Date }>`
    with i as (
      insert into images (id, customer_id, source, status, checksum, bytes, format, raw_key, received_at)
      select gen_random_uuid(), ${customerId}, 'http', 'processing', md5(random()::text), 1000, 'png', 'raw/' || n, now()
      from generate_series(1, ${count}) n
      returning id, customer_id
    )
    insert into jobs (kind, image_id, customer_id, priority, vt, state, max_attempts, run_at, lease_token, lease_until, attempts)
    select 'process-image', i.id, i.customer_id, 'interactive', 0, 'running', 5, now(), gen_random_uuid(), now() + interval '1 hour', 1
    from i
    returning id, image_id, lease_token, created_at`.execute(db);
  return rows.map((r) => ({
    id: r.id,
    kind: 'process-image',
    imageId: r.image_id,
    attempts: 1,
    maxAttempts: 5,
    leaseToken: r.lease_token,
    createdAt: r.created_at,
    processor: null,
    runId: null,
    priority: 'interactive',
    alone: false,
    express: false,
    traceparent: null,
  }));
}

/** pg_stat_activity's client backends (the bench's own aside), by what they wait on. */
async function sampleWaits(counts: Map<string, number>): Promise<void> {
  const { rows } = await sql<{ wait: string }>`
    select case when state = 'idle in transaction' then 'Client:idle in transaction'
                when wait_event_type is null then 'CPU'
                else wait_event_type || ':' || wait_event end as wait
    from pg_stat_activity
    where backend_type = 'client backend' and pid <> pg_backend_pid() and datname = current_database()
      and state <> 'idle'`.execute(db);
  for (const { wait } of rows) counts.set(wait, (counts.get(wait) ?? 0) + 1);
}

try {
  const customerId = (
    await sql<{
      id: string;
    }>`insert into customers (id, name) values (gen_random_uuid(), 'rollups') returning id`.execute(db)
  ).rows[0]!.id;
  const max = Math.max(...WORKERS);
  await step(`${max} worker processes`, async () => {
    for (let i = 0; i < max; i++) {
      for (const pinned of [false, true]) {
        const target = pinned ? `${url}?options=${encodeURIComponent('-c imagelake.counter_slot=0')}` : url;
        children.push(
          fork(fileURLToPath(new URL('./rollups-worker.ts', import.meta.url)), [target], {
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          }),
        );
      }
    }
  });
  const slotted = children.filter((_, i) => i % 2 === 0);
  const pinned = children.filter((_, i) => i % 2 === 1);
  const table: Record<string, Record<string, string | number>> = {};
  const base: Record<string, number> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const workers of WORKERS) {
      for (const [mode, group] of [
        ['one row per key', pinned],
        ['slots', slotted],
      ] as const) {
        const using = group.slice(0, workers);
        await Promise.all(
          using.map(async (c) => ask(c, { jobs: await claimedJobs(customerId, PER_PROCESS) })),
        );
        const waits = new Map<string, number>();
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            await sampleWaits(waits);
            await new Promise((r) => setTimeout(r, 10));
          }
        })();
        // This process's tree: the embedded PostgreSQL and the worker processes (and this one).
        const cpuBefore = namedCpuMs(processTree(process.pid));
        const started = performance.now();
        const results = await Promise.all(using.map((c) => ask(c, { go: SECONDS * 1000 })));
        const seconds = (performance.now() - started) / 1000;
        const cpu = cpuByKindBetween(cpuBefore, namedCpuMs(processTree(process.pid)));
        sampling = false;
        await sampler;
        const done = results.reduce((n, r) => n + r.done!, 0);
        const rate = done / seconds;
        if (workers === WORKERS[0]) base[mode] = rate;
        const samples = [...waits.values()].reduce((a, b) => a + b, 0) || 1;
        const share = (match: (k: string) => boolean) =>
          `${Math.round((100 * [...waits].filter(([k]) => match(k)).reduce((n, [, v]) => n + v, 0)) / samples)}%`;
        const key = `${workers} process${workers > 1 ? 'es' : ''}, ${mode}${ROUNDS > 1 ? ` (round ${round + 1})` : ''}`;
        table[key] = {
          'outcomes/s': Math.round(rate),
          'PG ms/outcome': +(cpu.postgres / done).toFixed(2),
          'node ms/outcome': +(cpu.node / done).toFixed(2),
          'cores busy': +((cpu.postgres + cpu.node) / 1000 / seconds).toFixed(2),
          [`vs ${WORKERS[0]}`]: +(rate / base[mode]!).toFixed(2),
          Lock: share((k) => k.startsWith('Lock:')),
          CPU: share((k) => k === 'CPU'),
          IO: share((k) => k.startsWith('IO:')),
          LWLock: share((k) => k.startsWith('LWLock:')),
          Client: share((k) => k.startsWith('Client:')),
        };
        const top = [...waits]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 5)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
        console.log(`${key}: ${Math.round(rate)} outcomes/s; backends sampled ${samples}: ${top}`);
      }
      const slots =
        table[
          `${workers} process${workers > 1 ? 'es' : ''}, slots${ROUNDS > 1 ? ` (round ${round + 1})` : ''}`
        ]!;
      const one =
        table[
          `${workers} process${workers > 1 ? 'es' : ''}, one row per key${ROUNDS > 1 ? ` (round ${round + 1})` : ''}`
        ]!;
      slots['vs one row'] = +(Number(slots['outcomes/s']) / Number(one['outcomes/s'])).toFixed(2);
    }
  }
  console.table(table);

  // Exact: every rollup's sum over its slots equals the facts.
  const { rows } = await sql<Record<string, string>>`
    select (select count(*) from analytics.facts)::text as facts,
           (select sum(images) from analytics.rollup_daily)::text as daily,
           (select sum(images) from analytics.rollup_hourly)::text as hourly,
           (select sum(images) from analytics.rollup_daily_totals)::text as totals,
           (select sum(images) from analytics.rollup_daily_customers)::text as customers,
           (select sum(images) from analytics.rollup_monthly_customers)::text as monthly,
           (select sum(images_failed) from analytics.usage_daily)::text as usage,
           (select count(*) from analytics.rollup_daily)::text as daily_rows`.execute(db);
  const counts = rows[0]!;
  const exact = ['daily', 'hourly', 'totals', 'customers', 'monthly', 'usage'].every(
    (k) => counts[k] === counts.facts,
  );
  console.log(
    `facts ${counts.facts}; rollup sums ${JSON.stringify(counts)}: ${exact ? 'exact' : 'NOT EXACT'}`,
  );
  if (!exact) process.exitCode = 1;
} finally {
  for (const child of children) child.send({ stop: true });
  await Promise.all(
    children.map((c) => new Promise((r) => (c.exitCode === null ? c.once('exit', r) : r(null)))),
  );
  await catalog.close();
}
