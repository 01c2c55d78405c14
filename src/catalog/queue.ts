import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * The job queue lives in PostgreSQL beside the catalog, so landing an image and queueing its
 * processing commit in one transaction. Workers claim due jobs with FOR UPDATE SKIP LOCKED and hold
 * them under a lease they renew while working; a worker that dies stops renewing, and its jobs are
 * claimed again once the lease runs out. Finishing a job checks the lease token, so a worker that
 * lost its lease cannot write a second outcome.
 *
 * This module owns the jobs table: every query on it lives here.
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
}

export const PROCESS_IMAGE = 'process-image';
export const REPROCESS_IMAGE = 'reprocess-image';
/** Every kind of job the queue holds; each has one handler (processing/jobs/registry.ts). */
export const JOB_KINDS = [PROCESS_IMAGE, REPROCESS_IMAGE] as const;
export type JobKind = (typeof JOB_KINDS)[number];
export const NOTIFY_CHANNEL = 'imagelake_jobs';

export async function enqueue(
  db: Db,
  imageId: string,
  maxAttempts: number,
  kind = PROCESS_IMAGE,
): Promise<void> {
  await db
    .insertInto('jobs')
    .values({
      kind,
      image_id: imageId,
      state: 'queued',
      max_attempts: maxAttempts,
      run_at: sql<Date>`now()` as never,
      lease_token: null,
      lease_until: null,
      last_error: null,
      processor: null,
      run_id: null,
    })
    .execute();
  // Wakes idle workers at once instead of at their next poll; delivered only if the transaction commits.
  await sql`select pg_notify(${NOTIFY_CHANNEL}, ${kind})`.execute(db);
}

/** Queues one reprocess run's jobs, one per image, and wakes the workers once the transaction commits. */
export async function enqueueReprocess(
  db: Db,
  run: { id: string; processor: string },
  imageIds: string[],
  maxAttempts: number,
): Promise<void> {
  await db
    .insertInto('jobs')
    .values(
      imageIds.map((imageId) => ({
        kind: REPROCESS_IMAGE,
        image_id: imageId,
        state: 'queued' as const,
        max_attempts: maxAttempts,
        run_at: sql<Date>`now()` as never,
        lease_token: null,
        lease_until: null,
        last_error: null,
        processor: run.processor,
        run_id: run.id,
      })),
    )
    .execute();
  await sql`select pg_notify(${NOTIFY_CHANNEL}, ${REPROCESS_IMAGE})`.execute(db);
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

export async function claim(db: Db, limit: number, leaseMs: number): Promise<ClaimedJob[]> {
  const result = await sql<{
    id: string;
    kind: string;
    image_id: string;
    attempts: number;
    max_attempts: number;
    lease_token: string;
    created_at: Date;
    processor: string | null;
    run_id: string | null;
  }>`
    with due as (
      select id from jobs
      where (state = 'queued' and run_at <= now()) or (state = 'running' and lease_until < now())
      order by run_at
      for update skip locked
      limit ${limit}
    )
    update jobs j
    set state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
        lease_until = now() + ${leaseMs} * interval '1 millisecond'
    from due where j.id = due.id
    returning j.id, j.kind, j.image_id, j.attempts, j.max_attempts, j.lease_token, j.created_at, j.processor, j.run_id`.execute(
    db,
  );
  return result.rows.map((r) => ({
    id: String(r.id),
    kind: r.kind,
    imageId: r.image_id,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    leaseToken: r.lease_token,
    createdAt: r.created_at,
    processor: r.processor,
    runId: r.run_id,
  }));
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
// Until jobs carry their own customer_id and priority columns, the customer comes from the image
// and the priority from the kind: a reprocess job is bulk, every other job interactive. Once the
// columns exist, read j.customer_id and j.priority here instead and drop the join.

const PRIORITY = sql<string>`case when j.kind = ${REPROCESS_IMAGE} then 'bulk' else 'interactive' end`;

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
    select ${PRIORITY} as priority,
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
    select i.customer_id, count(*) as waiting, extract(epoch from now() - min(j.created_at))::float8 as oldest
    from jobs j join images i on i.id = j.image_id
    where j.state = 'queued'
    group by i.customer_id
    order by count(*) desc, min(j.created_at)
    limit ${limit}`.execute(db);
  return rows.rows.map((r) => ({
    customerId: r.customer_id,
    waiting: Number(r.waiting),
    oldestWaitSeconds: Math.max(0, r.oldest),
  }));
}
