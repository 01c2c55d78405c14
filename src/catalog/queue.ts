import { sql } from 'kysely';
import type { Db } from './database.ts';
import { PREPARE } from './prepared-statements.ts';
import type { JobPriority } from './schema.ts';

/**
 * The job queue lives in PostgreSQL beside the catalog, so landing an image and queueing its
 * processing commit in one transaction. Workers claim due jobs with FOR UPDATE SKIP LOCKED and hold
 * them under a lease they renew while working; a worker that dies stops renewing, and its jobs are
 * claimed again once the lease runs out. Finishing a job checks the lease token, so a worker that
 * lost its lease cannot write a second outcome.
 *
 * Fair order across customers: see `stamp`, `claim` and `claimExpress`.
 *
 * This module owns the jobs and queue_shares tables: every query on them lives here (the stamp also
 * reads a customer's weight).
 */
export interface ClaimedJob {
  id: string;
  kind: string;
  imageId: string;
  attempts: number;
  maxAttempts: number;
  leaseToken: string;
  createdAt: Date;
  /** For a reprocess job: the one processor to run, and the run it belongs to. */
  processor: string | null;
  runId: string | null;
  priority: JobPriority;
  /**
   * Its customer had no other job running when it was claimed (no interactive one, for an
   * interactive job): the worker may run it in the express lane.
   */
  alone: boolean;
  /** Runs in the express lane, beside the worker's full slots (set by the runner, or by `claimExpress`). */
  express: boolean;
  /** The W3C traceparent of the span that queued it (the landing): the job's span continues that trace. */
  traceparent: string | null;
}

export const PROCESS_IMAGE = 'process-image';
export const REPROCESS_IMAGE = 'reprocess-image';
/** Every kind of job the queue holds; each has one handler (processing/jobs/registry.ts). */
export const JOB_KINDS = [PROCESS_IMAGE, REPROCESS_IMAGE] as const;
export type JobKind = (typeof JOB_KINDS)[number];
export const NOTIFY_CHANNEL = 'imagelake_jobs';

/**
 * Stamps `count` new jobs of one customer and priority with their virtual times, and returns them
 * in order. A customer with due jobs already waiting continues from its last stamp; one without
 * starts at the head of the queue (the smallest vt waiting), so an idle customer's first job is
 * next in line however long another's backlog is. Each job is 1/weight after the one before, so a
 * customer of weight 3 gets three claims for every one of a customer of weight 1 while both wait.
 * The row in queue_shares is locked until the caller's transaction commits: one customer's
 * landings are stamped one after another, in any number of processes.
 */
async function stamp(
  db: Db,
  customerId: string,
  priority: JobPriority,
  count: number,
  /** Commit without waiting for the WAL flush (a statement of its own, see reserveVirtualTime). */
  asynchronous = false,
): Promise<number[]> {
  // Prepared (catalog/prepared-statements.ts), the priority written in: its plan then hangs on no value.
  const level = sql.lit(priority);
  const result = await sql<{ last_vt: number; weight: number }>`${PREPARE}
    with head as (
      select coalesce((
        select vt from jobs
        where state = 'queued' and priority = ${level} and run_at <= now()
        order by priority desc, vt, id limit 1), 0) as vt
    ), w as (
      select coalesce((select weight from customers where id = ${customerId}), 1)::float8 as weight
        ${asynchronous ? sql`, set_config('synchronous_commit', 'off', true) as asynchronous` : sql``}
    ), waiting as (
      select exists (
        select 1 from jobs
        where customer_id = ${customerId} and priority = ${level} and state = 'queued' and run_at <= now()
      ) as found
    )
    insert into queue_shares as s (customer_id, priority, last_vt)
    select ${customerId}, ${priority}, head.vt + ${count} / w.weight from head, w
    on conflict (customer_id, priority) do update
      set last_vt = greatest(
        case when (select found from waiting) then s.last_vt else 0 end,
        (select vt from head)
      ) + ${count} / (select weight from w)
    returning last_vt, (select weight from w) as weight`.execute(db);
  const { last_vt: last, weight } = result.rows[0]!;
  return Array.from({ length: count }, (_, k) => last - (count - 1 - k) / weight);
}

/**
 * A landing's job's virtual time, stamped in a statement of its own just before the landing's
 * transaction. Stamped inside it, the customer's row in queue_shares stayed locked until the
 * landing committed (its WAL flush included), so every concurrent upload of one customer queued
 * behind the one before. On its own the row is held for one statement, committed without waiting
 * for the flush: losing the stamp in a crash only lets the next one start from the head again, and
 * the landing's own commit flushes it anyway. A landing refused after this (its quota, a duplicate)
 * leaves a gap of 1/weight in its customer's virtual time, which only that customer pays.
 */
export async function reserveVirtualTime(db: Db, customerId: string, priority: JobPriority): Promise<number> {
  return (await reserveVirtualTimes(db, customerId, priority, 1))[0]!;
}

/** The virtual times of `count` landings of one customer recorded together, as reserveVirtualTime. */
export async function reserveVirtualTimes(
  db: Db,
  customerId: string,
  priority: JobPriority,
  count: number,
): Promise<number[]> {
  return stamp(db, customerId, priority, count, true);
}

/** Queues one image's processing in the caller's transaction, and wakes the workers once it commits. */
export async function enqueue(
  db: Db,
  job: {
    imageId: string;
    customerId: string;
    priority?: JobPriority;
    traceparent?: string | null;
    /** Taken by reserveVirtualTime before the transaction; stamped here when absent. */
    vt?: number;
  },
  maxAttempts: number,
  kind = PROCESS_IMAGE,
): Promise<void> {
  const priority = job.priority ?? 'interactive';
  const vt = job.vt ?? (await stamp(db, job.customerId, priority, 1))[0]!;
  await enqueueMany(
    db,
    [
      {
        imageId: job.imageId,
        customerId: job.customerId,
        priority,
        traceparent: job.traceparent ?? null,
        vt,
      },
    ],
    maxAttempts,
    kind,
  );
}

/** A job's row, queued to run now. */
function queuedJob(
  job: {
    kind: string;
    imageId: string;
    customerId: string;
    priority: JobPriority;
    vt: number;
    traceparent: string | null;
    processor?: string;
    runId?: string;
  },
  maxAttempts: number,
) {
  return {
    kind: job.kind,
    image_id: job.imageId,
    customer_id: job.customerId,
    priority: job.priority,
    vt: job.vt,
    state: 'queued' as const,
    max_attempts: maxAttempts,
    run_at: sql<Date>`now()` as never,
    lease_token: null,
    lease_until: null,
    last_error: null,
    processor: job.processor ?? null,
    run_id: job.runId ?? null,
    traceparent: job.traceparent,
  };
}

/**
 * Queues several images' processing in the caller's transaction (a group commit's), each with the
 * virtual time reserved for it, and wakes the workers once it commits.
 */
export async function enqueueMany(
  db: Db,
  jobs: Array<{
    imageId: string;
    customerId: string;
    priority: JobPriority;
    traceparent: string | null;
    vt: number;
  }>,
  maxAttempts: number,
  kind = PROCESS_IMAGE,
): Promise<void> {
  if (jobs.length === 0) return;
  await db
    .insertInto('jobs')
    .values(jobs.map((job) => queuedJob({ ...job, kind }, maxAttempts)))
    // Wakes idle workers at once instead of at their next poll, in the same round trip; delivered
    // only if the transaction commits, and once however many rows notify (PostgreSQL folds a
    // transaction's identical notifications).
    .returning(sql<string>`pg_notify(${NOTIFY_CHANNEL}, ${kind})`.as('notified'))
    .execute();
}

/**
 * Queues one reprocess run's jobs, one per image, and wakes the workers once the transaction
 * commits. Reprocess work is always bulk: it takes only what interactive work leaves idle.
 */
export async function enqueueReprocess(
  db: Db,
  run: { id: string; processor: string; traceparent?: string | null },
  images: { id: string; customerId: string }[],
  maxAttempts: number,
): Promise<void> {
  if (images.length === 0) return;
  const byCustomer = new Map<string, string[]>();
  for (const image of images) {
    const ids = byCustomer.get(image.customerId) ?? [];
    ids.push(image.id);
    byCustomer.set(image.customerId, ids);
  }
  const rows = [];
  for (const [customerId, ids] of [...byCustomer].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const vts = await stamp(db, customerId, 'bulk', ids.length);
    for (const [k, imageId] of ids.entries()) {
      rows.push(
        queuedJob(
          {
            kind: REPROCESS_IMAGE,
            imageId,
            customerId,
            priority: 'bulk',
            vt: vts[k]!,
            traceparent: run.traceparent ?? null,
            processor: run.processor,
            runId: run.id,
          },
          maxAttempts,
        ),
      );
    }
  }
  await db.insertInto('jobs').values(rows).execute();
  await sql`select pg_notify(${NOTIFY_CHANNEL}, ${REPROCESS_IMAGE})`.execute(db);
}

/** Jobs of a priority (one customer's, or everyone's) still queued or running: a bulk retry's window. */
export async function countOutstanding(db: Db, priority: JobPriority, customerId?: string): Promise<number> {
  let query = db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('priority', '=', priority)
    .where('kind', '=', PROCESS_IMAGE);
  if (customerId) query = query.where('customer_id', '=', customerId);
  return Number((await query.executeTakeFirstOrThrow()).n);
}

/** A run's jobs still queued or running. */
export async function countRunJobs(db: Db, runId: string): Promise<number> {
  const outstanding = await db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('run_id', '=', runId)
    .executeTakeFirstOrThrow();
  return Number(outstanding.n);
}

/** Drops a cancelled run's jobs that no worker took yet. */
export async function dropQueuedRunJobs(db: Db, runId: string): Promise<void> {
  await db.deleteFrom('jobs').where('run_id', '=', runId).where('state', '=', 'queued').execute();
}

/**
 * Claims up to `limit` due jobs: first those whose lease ran out (their worker died), then waiting
 * jobs in (priority, vt) order, walking the jobs_fair index from its head: every interactive job
 * before any bulk one, and within a priority the customers in weighted round robin (see `stamp`),
 * oldest first within a customer. The order is decided here, in one statement, so it holds with
 * any number of worker processes.
 */
function claimStatement(limit: number, leaseMs: number) {
  // The limit is written into the statement, not sent as a value: the plan is then the same
  // whatever the values, so the statement is prepared (catalog/prepared-statements.ts) and planned
  // once per session and batch size rather than at every claim.
  const atMost = sql.lit(Math.floor(limit));
  return sql<ClaimRow>`${PREPARE}
    with expired as (
      select id from jobs
      where state = 'running' and lease_until < now()
      order by lease_until
      for update skip locked
      limit ${atMost}
    ), waiting as (
      select id from jobs
      where state = 'queued' and run_at <= now()
      order by priority desc, vt, id
      for update skip locked
      limit ${atMost}
    ), due as (
      (select id from expired) union all (select id from waiting) limit ${atMost}
    )
    update jobs j
    set state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
        lease_until = now() + ${leaseMs} * interval '1 millisecond'
    from due where j.id = due.id
    returning ${RETURNING}`;
}

/** A claimed row as the claims return it (`RETURNING`). */
interface ClaimRow {
  id: string;
  kind: string;
  image_id: string;
  attempts: number;
  max_attempts: number;
  lease_token: string;
  created_at: Date;
  processor: string | null;
  run_id: string | null;
  priority: JobPriority;
  alone: boolean;
  traceparent: string | null;
}

// `alone` reads the jobs as they were before this claim: one index probe (jobs_running_customer).
const RETURNING = sql.raw(
  `j.id, j.kind, j.image_id, j.attempts, j.max_attempts, j.lease_token, j.created_at, j.processor, j.run_id, j.priority, j.traceparent,
   not exists (select 1 from jobs r where r.customer_id = j.customer_id and r.state = 'running' and r.id <> j.id) as alone`,
);

/** How far down the interactive queue the express claim looks for a customer with nothing running. */
const EXPRESS_HEAD = 64;

/**
 * The express lane: one interactive job whose customer has nothing running anywhere, taken from
 * the head of the queue even when this worker's slots are full. A customer that sends one image
 * while another's backlog fills every slot would otherwise wait for an image in flight to finish
 * first; with this its image starts at once, on a thread kept for the purpose, and the backlog's
 * customers (who have work running) never qualify. Newcomers are stamped at the queue's head
 * (`stamp`), so looking at its first jobs finds them; the look is bounded, so a million waiting
 * jobs cost the same as ten.
 */
function expressStatement(leaseMs: number) {
  // Prepared, as the claim is: nothing its plan hangs on is sent as a value.
  return sql<ClaimRow>`${PREPARE}
    with head as (
      select id, customer_id, vt from jobs
      where state = 'queued' and priority = 'interactive' and run_at <= now()
      order by priority desc, vt, id
      limit ${sql.lit(EXPRESS_HEAD)}
    ), idle as (
      -- Each customer at the head once, not once per job of it there: a customer with many jobs
      -- queued would otherwise have its running ones looked up for every one of them.
      select c.customer_id from (select distinct customer_id from head) c
      where not exists (select 1 from jobs r where r.customer_id = c.customer_id and r.state = 'running')
    ), pick as (
      select j.id from jobs j join head h on h.id = j.id join idle i on i.customer_id = h.customer_id
      where j.state = 'queued'
      order by h.vt, h.id
      limit 1
      for update of j skip locked
    )
    update jobs j
    set state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
        lease_until = now() + ${leaseMs} * interval '1 millisecond'
    from pick where j.id = pick.id
    returning ${RETURNING}`;
}

/** The claim's query plan (EXPLAIN, not run): bench/claim.ts shows it walks indexes, not the table. */
export async function explainClaim(db: Db, limit: number, leaseMs: number): Promise<string> {
  const result = await sql<{ 'QUERY PLAN': string }>`explain ${claimStatement(limit, leaseMs)}`.execute(db);
  return result.rows.map((r) => r['QUERY PLAN']).join('\n');
}

export async function claim(db: Db, limit: number, leaseMs: number): Promise<ClaimedJob[]> {
  const result = await claimStatement(limit, leaseMs).execute(db);
  return result.rows.map((r) => claimed(r, false));
}

/** Claims one job through the express lane (see `expressStatement`), or none. */
export async function claimExpress(db: Db, leaseMs: number): Promise<ClaimedJob | undefined> {
  const result = await expressStatement(leaseMs).execute(db);
  return result.rows[0] && claimed(result.rows[0], true);
}

/** The express claim's query plan (EXPLAIN, not run), for bench/claim.ts. */
export async function explainExpress(db: Db, leaseMs: number): Promise<string> {
  const result = await sql<{ 'QUERY PLAN': string }>`explain ${expressStatement(leaseMs)}`.execute(db);
  return result.rows.map((r) => r['QUERY PLAN']).join('\n');
}

function claimed(r: ClaimRow, express: boolean): ClaimedJob {
  return {
    id: String(r.id),
    kind: r.kind,
    imageId: r.image_id,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    leaseToken: r.lease_token,
    createdAt: r.created_at,
    processor: r.processor,
    runId: r.run_id,
    traceparent: r.traceparent,
    priority: r.priority,
    alone: r.alone,
    express,
  };
}

/** Extends the leases of jobs still being worked on. Returns the tokens that were still held. */
export async function renewLeases(db: Db, tokens: string[], leaseMs: number): Promise<Set<string>> {
  if (tokens.length === 0) return new Set();
  const rows = await db
    .updateTable('jobs')
    .set({ lease_until: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'` as never })
    .where('lease_token', 'in', tokens)
    .where('state', '=', 'running')
    .returning('lease_token')
    .execute();
  return new Set(rows.map((r) => r.lease_token!));
}

/** Removes a finished job if this worker still holds it; false means the lease was lost. */
export async function finish(db: Db, job: ClaimedJob): Promise<boolean> {
  const result = await db
    .deleteFrom('jobs')
    .where('id', '=', job.id)
    .where('lease_token', '=', job.leaseToken)
    .executeTakeFirst();
  return Number(result.numDeletedRows) === 1;
}

/** Puts a job back with exponential backoff (1 s, 2 s, 4 s ... capped at 5 min). */
export async function retryLater(db: Db, job: ClaimedJob, error: string): Promise<boolean> {
  const delayMs = Math.min(1000 * 2 ** (job.attempts - 1), 300_000);
  const result = await db
    .updateTable('jobs')
    .set({
      state: 'queued',
      lease_token: null,
      lease_until: null,
      last_error: error,
      run_at: sql<Date>`now() + ${delayMs} * interval '1 millisecond'` as never,
    })
    .where('id', '=', job.id)
    .where('lease_token', '=', job.leaseToken)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function depth(db: Db): Promise<{ queued: number; running: number }> {
  const rows = await db
    .selectFrom('jobs')
    .select(['state', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy('state')
    .execute();
  const of = (state: string) => Number(rows.find((r) => r.state === state)?.n ?? 0);
  return { queued: of('queued'), running: of('running') };
}

// ---- The queue's view (GET /v1/queue, /metrics) ----

export interface QueueByPriority {
  priority: string;
  waiting: number;
  inFlight: number;
  /** Seconds the oldest waiting job has waited (by the catalog's clock); null when none waits. */
  oldestWaitSeconds: number | null;
}

/** Waiting (queued) and in-flight (running) jobs by priority, and the oldest waiting job's age. */
export async function queueByPriority(db: Db): Promise<QueueByPriority[]> {
  const rows = await sql<{ priority: string; waiting: string; in_flight: string; oldest: number | null }>`
    select j.priority,
      count(*) filter (where j.state = 'queued') as waiting,
      count(*) filter (where j.state = 'running') as in_flight,
      extract(epoch from now() - min(j.created_at) filter (where j.state = 'queued'))::float8 as oldest
    from jobs j group by 1`.execute(db);
  return ['interactive', 'bulk'].map((priority) => {
    const r = rows.rows.find((x) => x.priority === priority);
    return {
      priority,
      waiting: Number(r?.waiting ?? 0),
      inFlight: Number(r?.in_flight ?? 0),
      oldestWaitSeconds: r?.oldest === null || r?.oldest === undefined ? null : Math.max(0, r.oldest),
    };
  });
}

/** The customers with the most waiting jobs, with when their oldest waiting job was queued. */
export async function topWaitingCustomers(
  db: Db,
  limit: number,
): Promise<Array<{ customerId: string; waiting: number; oldestWaitSeconds: number }>> {
  const rows = await sql<{ customer_id: string; waiting: string; oldest: number }>`
    select j.customer_id, count(*) as waiting, extract(epoch from now() - min(j.created_at))::float8 as oldest
    from jobs j
    where j.state = 'queued'
    group by j.customer_id
    order by count(*) desc, min(j.created_at)
    limit ${limit}`.execute(db);
  return rows.rows.map((r) => ({
    customerId: r.customer_id,
    waiting: Number(r.waiting),
    oldestWaitSeconds: Math.max(0, r.oldest),
  }));
}
