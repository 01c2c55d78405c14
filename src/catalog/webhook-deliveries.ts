// Over 350 lines on purpose: every statement on webhook_deliveries belongs to its one owner (the
// writes, the dispatcher's claim and record, the delivery log and replay, retention's deletions and
// audit, the dashboard's counts), so that no SQL on the table lives anywhere else.
import { randomUUID } from 'node:crypto';
import { type RawBuilder, type Selectable, sql } from 'kysely';
import { counterSlot } from './counter-slots.ts';
import type { Db } from './database.ts';
import { PREPARE } from './prepared-statements.ts';
import type { DeliveryAttempt, DeliveryStatus, WebhookDeliveriesTable } from './schema.ts';

/**
 * The `webhook_deliveries`, `webhook_due` and `webhook_failed` tables: every statement on them. A
 * delivery is written in the transaction of what it tells (landing, outcome, erasure, purge), claimed
 * by the dispatcher that holds its endpoint's lease (so several dispatchers never send the same
 * attempt at once), and logged attempt by attempt. webhooks/dispatcher.ts sends;
 * webhooks/schedule.ts says when to try again.
 *
 * A delivery is pending exactly while webhook_due has a row for it (migration 0034): the claim reads
 * that narrow table, and recording an attempt changes no column an index of webhook_deliveries
 * covers, so the row is updated in place on its page. Every statement here that changes a delivery's
 * status writes or deletes its due row in the same statement.
 *
 * Every failed delivery has a row in webhook_failed (0035). The delivery log lists pending and
 * failed deliveries, and the replay of a range takes failed ones, from these two narrow tables by
 * time (webhook_due keeps each delivery's creation time for it) rather than walking all of an
 * endpoint's deliveries. They check the status too: an attempt in flight when its endpoint was
 * disabled records what its receiver answered over the failure (failPending), and its row in
 * webhook_failed stays until the delivery goes. A record does not look for one, which would cost
 * every delivery a lookup for that rare race.
 */
export type DeliveryRow = Selectable<WebhookDeliveriesTable>;

/** Event types whose deliveries carry only an image id, not its metadata. */
export const END_OF_IMAGE_EVENTS = ['image.erased', 'image.expired'] as const;

export interface NewDelivery {
  endpointId: string;
  customerId: string;
  imageId: string | null;
  eventType: string;
  payload: string;
  /** The W3C traceparent of the span writing it (the landing, the outcome), or null when untraced. */
  traceparent?: string | null;
}

/** Writes deliveries in the caller's transaction, due now. Returns their ids. */
export async function addDeliveries(db: Db, deliveries: NewDelivery[], at: Date): Promise<string[]> {
  if (deliveries.length === 0) return [];
  const rows = deliveries.map((d) => ({
    id: randomUUID(),
    endpoint_id: d.endpointId,
    customer_id: d.customerId,
    image_id: d.imageId,
    event_type: d.eventType,
    payload: d.payload,
    next_attempt_at: at,
    last_status: null,
    last_error: null,
    created_at: at,
    delivered_at: null,
    traceparent: d.traceparent ?? null,
  }));
  for (let i = 0; i < rows.length; i += 500)
    await db
      .with('written', (db) =>
        db
          .insertInto('webhook_deliveries')
          .values(rows.slice(i, i + 500))
          .returning(['id', 'endpoint_id']),
      )
      // Counted for the operators' panel, by endpoint and day (see `outcomesByCustomer`).
      .with('counted', (db) =>
        db
          .insertInto('webhook_written_daily')
          .columns(['day', 'endpoint_id', 'slot', 'written'])
          .expression((eb) =>
            eb
              .selectFrom('written')
              .select((eb) => [
                sql<string>`(${at}::timestamptz at time zone 'UTC')::date`.as('day'),
                'endpoint_id',
                counterSlot.as('slot'),
                eb.fn.countAll<string>().as('written'),
              ])
              .groupBy('endpoint_id'),
          )
          .onConflict((oc) =>
            oc
              .columns(['day', 'endpoint_id', 'slot'])
              .doUpdateSet({ written: sql`webhook_written_daily.written + excluded.written` }),
          ),
      )
      .insertInto('webhook_due')
      .columns(['delivery_id', 'endpoint_id', 'next_attempt_at', 'created_at'])
      .expression((eb) =>
        eb
          .selectFrom('written')
          .select([
            'id',
            'endpoint_id',
            sql<Date>`${at}::timestamptz`.as('at'),
            sql<Date>`${at}::timestamptz`.as('created_at'),
          ]),
      )
      .execute();
  return rows.map((r) => r.id);
}

/**
 * Deletes the due rows of the deliveries `ids` selects (from a data-modifying CTE of the same
 * statement), as an array: the planner cannot tell how many rows such a CTE returns, and joined to
 * it, it hashed the whole due table for a batch of a few dozen.
 */
function undue(ids: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`delete from webhook_due where delivery_id = any(array(${ids}))`;
}

/**
 * The row in webhook_failed that every failed delivery has, for deliveries that have just failed
 * (`rows`: id, endpoint_id, created_at); one already there stays.
 */
function keepFailed(rows: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`
    insert into webhook_failed (delivery_id, endpoint_id, created_at) ${rows}
    on conflict (delivery_id) do nothing`;
}

/**
 * The CTEs that take deleted deliveries out of the tables beside them, for a statement whose CTE
 * `gone` deleted them (returning id, endpoint_id, created_at): their due rows, their failed rows, and
 * their share of the panel's counts of deliveries written, by endpoint and day. Every statement that
 * deletes deliveries ends with these.
 */
function forgetGone(): RawBuilder<unknown> {
  return sql`
    undue as (${undue(sql`select g.id from gone g`)}),
    unfail as (delete from webhook_failed where delivery_id = any(array(select g.id from gone g))),
    uncount as (
      insert into webhook_written_daily as w (day, endpoint_id, slot, written)
      select (g.created_at at time zone 'UTC')::date, g.endpoint_id, ${counterSlot}, -count(*)
        from gone g group by 1, 2
      on conflict (day, endpoint_id, slot) do update set written = w.written + excluded.written)`;
}

// ---- The dispatcher's claim and its record of each attempt ----

export interface ClaimedDelivery {
  id: string;
  endpointId: string;
  customerId: string;
  imageId: string | null;
  eventType: string;
  payload: string;
  /** Attempts before this one, over the delivery's life (replays included). */
  attempts: number;
  /** Attempts since written or replayed, before this one: the place in the retry schedule. */
  roundAttempts: number;
  url: string;
  secret: string;
  previousSecret: string | null;
  previousSecretUntil: Date | null;
  /** The endpoint's failure streak at the claim: a success ends it. */
  failingSince: Date | null;
  /** The context of the span that wrote it: the attempt's span continues it. Null when untraced. */
  traceparent: string | null;
}

/** What a dispatcher already holds, by endpoint: the claim skips these and tops each endpoint up. */
export interface Held {
  /** By endpoint, every delivery held (waiting, in flight, or answered and not yet recorded). */
  ids: ReadonlyMap<string, readonly string[]>;
  /** By endpoint, how many are waiting or in flight (what its next rounds top up). */
  byEndpoint: ReadonlyMap<string, number>;
}

/**
 * What a dispatcher holds, as the claim reads it: `{"<endpoint>": {"n": 12, "ids": {"<delivery>": 1,
 * ...}}, ...}`. Written out directly: the ids are UUIDs, which need no escaping, and an object of
 * thousands of keys built to be stringified cost more than the statement's own work.
 */
function heldObject(held: Held): string {
  const parts: string[] = [];
  for (const endpoint of new Set([...held.byEndpoint.keys(), ...held.ids.keys()])) {
    const ids = held.ids.get(endpoint) ?? [];
    parts.push(
      `"${endpoint}":{"n":${held.byEndpoint.get(endpoint) ?? 0},"ids":{${ids.map((id) => `"${id}":1`).join(',')}}}`,
    );
  }
  return `{${parts.join(',')}}`;
}

/**
 * Takes due deliveries for `holder` (one dispatcher process), in one statement: endpoints round
 * robin (the one claimed longest ago first), each locked while claiming and then leased to the
 * holder on its row (webhook_endpoints.dispatcher, until `leaseMs` from now), and up to `ahead` of
 * each one's due deliveries, less what the holder already holds of it, and no more than its share
 * of `limit` among the endpoints claimed. An endpoint another live
 * dispatcher holds is skipped: one process at a time sends an endpoint's deliveries, so its
 * concurrency limit is that process's own count, across any number of them. The lease runs out
 * when its holder stops claiming (it died, or has nothing due); then any dispatcher takes it.
 *
 * Deliveries are read, not written: a claim costs a write per endpoint, not per delivery, and due
 * deliveries leave no row versions behind for the next claim to step over. The statement writes
 * the endpoint rows here rather than in catalog/webhooks.ts (their owner otherwise) because the
 * lease and the read must be one statement.
 *
 * Committed without waiting for the WAL flush (synchronous_commit off, for its own transaction
 * only): a lease lost to a PostgreSQL crash lets another dispatcher send the deliveries again,
 * duplicates with the same webhook-id, which at least once allows.
 *
 * Prepared: its generic plan is the custom one (index scans from each endpoint into webhook_due and
 * from there to each delivery), and planning it was a third of a claim's time. Whether an endpoint
 * has anything due is the first such row by that index (a lateral LIMIT 1): as an EXISTS, the
 * planner hashed the whole due table for it, so every claim cost as much as the backlog was long
 * (52 µs a delivery with 200,000 due, 26 µs now).
 *
 * The held ids go as one JSON object, by endpoint, each endpoint's ids the keys of an object of
 * their own, and a due row is skipped when its id is a key there (`?`, a binary search of the
 * object's sorted keys). A claim walks past the held rows first (they are the first due), once to
 * find that an endpoint has more and once to read it: as an array, each row was compared with every
 * held id, one by one (a prepared statement's arrays are never hashed), which took more of a claim
 * than reading the deliveries (4.5 ms for a claim of 128 with 384 held; 1.3 ms now).
 */
export async function claimDue(db: Db, options: ClaimOptions): Promise<ClaimedDelivery[]> {
  if (options.limit <= 0) return [];
  const result = await claimStatement(options).execute(db);
  return result.rows.map((r) => ({
    id: r.id,
    endpointId: r.endpoint_id,
    customerId: r.customer_id,
    imageId: r.image_id,
    eventType: r.event_type,
    payload: r.payload,
    attempts: r.attempts,
    roundAttempts: r.round_attempts,
    url: r.url,
    secret: r.secret,
    previousSecret: r.previous_secret,
    previousSecretUntil: r.previous_secret_until,
    failingSince: r.failing_since,
    traceparent: r.traceparent,
  }));
}

/** The claim's query plan as it runs (EXPLAIN ANALYZE: it leases, as a claim does). */
export async function explainClaimDue(db: Db, options: ClaimOptions): Promise<string> {
  const result = await sql<{ 'QUERY PLAN': string }>`explain (analyze) ${claimStatement(options)}`.execute(
    db,
  );
  return result.rows.map((r) => r['QUERY PLAN']).join('\n');
}

interface ClaimOptions {
  holder: string;
  limit: number;
  ahead: number;
  leaseMs: number;
  held: Held;
}

function claimStatement(options: ClaimOptions) {
  const { holder, held, ahead } = options;
  return sql<{
    id: string;
    endpoint_id: string;
    image_id: string | null;
    event_type: string;
    payload: string;
    attempts: number;
    round_attempts: number;
    traceparent: string | null;
    customer_id: string;
    url: string;
    secret: string;
    previous_secret: string | null;
    previous_secret_until: Date | null;
    failing_since: Date | null;
  }>`${PREPARE}
    with quick as (select set_config('synchronous_commit', 'off', true)),
    endpoints as (
      select e.id, h.held, h.held_ids
        from webhook_endpoints e cross join quick
             -- This endpoint's part of the held object, taken out once (OFFSET 0 keeps the planner
             -- from folding it into the filter below, where it was taken out again for every row).
             cross join lateral (
               select coalesce((m.h ->> 'n')::int, 0) as held, coalesce(m.h -> 'ids', '{}') as held_ids
                 from (select ${heldObject(held)}::jsonb -> e.id::text as h) m offset 0) h
             cross join lateral (
               select 1 from webhook_due q
                where q.endpoint_id = e.id and q.next_attempt_at <= now() and not (h.held_ids ? q.delivery_id::text)
                order by q.next_attempt_at limit 1) due
       where e.enabled
         and (e.dispatcher is null or e.dispatcher = ${holder}::uuid or e.dispatcher_until < now())
         and h.held < ${ahead}::int
       order by e.last_claim_at nulls first, e.id
       limit ${options.limit}
       for update of e skip locked),
    leased as (
      update webhook_endpoints w
         set dispatcher = ${holder}::uuid, last_claim_at = now(),
             dispatcher_until = now() + ${options.leaseMs} * interval '1 millisecond'
        from endpoints e
       where w.id = e.id
      returning w.id, e.held, e.held_ids, w.customer_id, w.url, w.secret, w.previous_secret,
                w.previous_secret_until, w.failing_since)
    select d.id, d.endpoint_id, d.image_id, d.event_type, d.payload, d.attempts, d.round_attempts,
           d.traceparent, w.customer_id, w.url, w.secret, w.previous_secret, w.previous_secret_until,
           w.failing_since
      from leased w cross join lateral (
        select d.id, d.endpoint_id, d.image_id, d.event_type, d.payload, d.attempts, d.round_attempts,
               d.traceparent
          from webhook_due q join webhook_deliveries d on d.id = q.delivery_id
         where q.endpoint_id = w.id and q.next_attempt_at <= now()
           and not (w.held_ids ? q.delivery_id::text)
         order by q.next_attempt_at
         -- The room is shared out among the endpoints claimed: many endpoints with a backlog each
         -- get some now, rather than the first few all of it and the others none until it drains.
         limit least(${ahead}::int - w.held, ceil(${options.limit}::numeric / (select count(*) from leased))::int)) d
     limit ${options.limit}`;
}

export interface AttemptRecord {
  id: string;
  endpointId: string;
  attempt: DeliveryAttempt;
  next: { status: DeliveryStatus; nextAttemptAt: Date | null };
}

/**
 * Records attempts and what follows each (delivered, tried again at `nextAttemptAt`, or failed), in
 * one statement, each only while `holder` still holds its endpoint: a dispatcher that lost it (it
 * stalled past the lease and another took the endpoint) records nothing, and the other sends the
 * delivery again. Returns the ids recorded.
 *
 * Committed without waiting for the WAL flush (synchronous_commit off): a record lost to a
 * PostgreSQL crash leaves its delivery pending, so it is sent again, with the same webhook-id. At
 * least once holds, and a dispatcher does not wait on the disk per delivery.
 */
export async function recordAttempts(db: Db, holder: string, records: AttemptRecord[]): Promise<Set<string>> {
  if (records.length === 0) return new Set();
  const endpoints = [...new Set(records.map((r) => r.endpointId))].join(',');
  // One JSON parameter for the whole batch, not one parameter per value (a batch of hundreds is
  // still one statement to send and plan), nor an array per column: the driver builds arrays in
  // JavaScript, character by character, where JSON.stringify is native.
  const batch = JSON.stringify(
    records.map((r) => ({
      id: r.id,
      status: r.next.status,
      next_at: r.next.nextAttemptAt,
      code: r.attempt.statusCode,
      error: r.attempt.error,
      attempt: r.attempt,
      at: r.attempt.at,
    })),
  );
  // Prepared: its plan is the same whatever the batch holds (from each record to its row and its due
  // row by their primary keys).
  const result = await sql<{ id: string }>`${PREPARE}
    with quick as (select set_config('synchronous_commit', 'off', true)),
    recorded as (
      update webhook_deliveries d
         set status = v.status, attempts = d.attempts + 1, round_attempts = d.round_attempts + 1,
             next_attempt_at = v.next_at, last_status = v.code, last_error = v.error,
             attempt_log = d.attempt_log || jsonb_build_array(v.attempt),
             delivered_at = case when v.status = 'delivered' then v.at else d.delivered_at end
        from jsonb_to_recordset(${batch}::jsonb)
               as v(id uuid, status text, next_at timestamptz, code int, error text, attempt jsonb, at timestamptz), quick
       where d.id = v.id
         -- The endpoints still held, looked up once for the batch (not once per record), as a list:
         -- the plan still goes from each record to its row by the primary key, never from the
         -- endpoint through all of its deliveries.
         and d.endpoint_id = any(array(
               select w.id from webhook_endpoints w
                where w.id = any(string_to_array(${endpoints}, ',')::uuid[]) and w.dispatcher = ${holder}::uuid))
      returning d.id, d.endpoint_id, d.created_at, v.status, v.next_at),
    ended as (${undue(sql`select r.id from recorded r where r.status <> 'pending'`)}),
    failed as (${keepFailed(sql`select r.id, r.endpoint_id, r.created_at from recorded r where r.status = 'failed'`)}),
    -- Tried again later: written, not only moved, should a replay or a disabled endpoint have taken
    -- the due row while the attempt was in flight (the attempt's record has the last word).
    later as (
      insert into webhook_due (delivery_id, endpoint_id, next_attempt_at, created_at)
      select r.id, r.endpoint_id, r.next_at, r.created_at from recorded r where r.status = 'pending'
      on conflict (delivery_id) do update set next_attempt_at = excluded.next_attempt_at)
    select id from recorded`.execute(db);
  return new Set(result.rows.map((r) => r.id));
}

/**
 * A disabled endpoint's waiting deliveries fail (a replay after re-enabling sends them). An attempt
 * in flight still records what its receiver answered.
 */
export async function failPending(db: Db, endpointId: string, reason: string): Promise<number> {
  // The deliveries first, then their due rows: the order in which a record takes their locks, so the
  // two cannot wait on each other. Still pending once locked: an attempt recorded meanwhile keeps
  // what it says.
  const result = await sql<{ n: string }>`
    with failed as (
      update webhook_deliveries d set status = 'failed', next_attempt_at = null, last_error = ${reason}
       where d.id in (select q.delivery_id from webhook_due q where q.endpoint_id = ${endpointId})
         and d.status = 'pending'
      returning d.id, d.endpoint_id, d.created_at),
    undue as (${undue(sql`select f.id from failed f`)}),
    kept as (${keepFailed(sql`select f.id, f.endpoint_id, f.created_at from failed f`)})
    select count(*) as n from failed`.execute(db);
  return Number(result.rows[0]?.n ?? 0);
}

// ---- The delivery log and replay ----

export const DELIVERY_CURSOR_PATTERN = '^[0-9]{1,15}_[0-9a-f-]{36}$';

export async function listDeliveries(
  db: Db,
  endpointId: string,
  filter: { status?: DeliveryStatus; from?: Date; after?: { at: Date; id: string }; limit: number },
): Promise<{ rows: DeliveryRow[]; next: string | undefined }> {
  // Pending and failed ones by their own tables, by time (a few among an endpoint's many delivered,
  // which its index by time would walk one by one); delivered ones by that index, whose rows mostly
  // are. A narrow table's rows are checked against the delivery's status (webhook_failed may name a
  // delivery that a late record delivered).
  const narrow =
    filter.status === 'failed' ? 'webhook_failed' : filter.status === 'pending' ? 'webhook_due' : undefined;
  const at = sql.ref<Date>(narrow ? 'n.created_at' : 'd.created_at');
  const id = sql.ref<string>(narrow ? 'n.delivery_id' : 'd.id');
  let query = (
    narrow
      ? db
          // Both tables have these three columns; named as one for the builder's types.
          .selectFrom(`${narrow} as n` as 'webhook_failed as n')
          .innerJoin('webhook_deliveries as d', 'd.id', 'n.delivery_id')
          .where('n.endpoint_id', '=', endpointId)
      : db.selectFrom('webhook_deliveries as d').where('d.endpoint_id', '=', endpointId)
  )
    .selectAll('d')
    .orderBy(at)
    .orderBy(id)
    .limit(filter.limit + 1);
  if (filter.status) query = query.where('d.status', '=', filter.status);
  if (filter.from) query = query.where(at, '>=', filter.from);
  const after = filter.after;
  if (after)
    query = query.where((eb) =>
      eb.or([eb(at, '>', after.at), eb.and([eb(at, '=', after.at), eb(id, '>', after.id)])]),
    );
  const rows = await query.execute();
  const page = rows.slice(0, filter.limit);
  const last = page.at(-1);
  return {
    rows: page,
    next: rows.length > filter.limit && last ? `${last.created_at.getTime()}_${last.id}` : undefined,
  };
}

export function decodeDeliveryCursor(cursor: string): { at: Date; id: string } | undefined {
  const match = /^(\d{1,15})_([0-9a-f-]{36})$/.exec(cursor);
  if (!match) return undefined;
  return { at: new Date(Number(match[1])), id: match[2]! };
}

export async function getDelivery(db: Db, endpointId: string, id: string): Promise<DeliveryRow | undefined> {
  return db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('endpoint_id', '=', endpointId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/**
 * Sends deliveries again from the start of the schedule, with their own webhook-id. A delivery in
 * flight when replayed ends as its attempt's record says (its receiver has it when that is
 * delivered).
 */
export async function replay(
  db: Db,
  endpointId: string,
  which: { id: string } | { from: Date; to: Date; status: DeliveryStatus },
  now: Date,
): Promise<number> {
  const result = await db
    .with('replayed', (db) => {
      const update = db
        .updateTable('webhook_deliveries as d')
        .set({ status: 'pending', round_attempts: 0, next_attempt_at: now });
      if ('id' in which)
        return update
          .where('d.endpoint_id', '=', endpointId)
          .where('d.id', '=', which.id)
          .returning(['d.id', 'd.endpoint_id', 'd.created_at']);
      // Failed ones by their own table, as the delivery log lists them.
      if (which.status === 'failed')
        return update
          .from('webhook_failed as f')
          .whereRef('d.id', '=', 'f.delivery_id')
          .where('f.endpoint_id', '=', endpointId)
          .where('f.created_at', '>=', which.from)
          .where('f.created_at', '<', which.to)
          .where('d.status', '=', 'failed')
          .returning(['d.id', 'd.endpoint_id', 'd.created_at']);
      return update
        .where('d.endpoint_id', '=', endpointId)
        .where('d.status', '=', which.status)
        .where('d.created_at', '>=', which.from)
        .where('d.created_at', '<', which.to)
        .returning(['d.id', 'd.endpoint_id', 'd.created_at']);
    })
    .with('unfailed', (db) =>
      db
        .deleteFrom('webhook_failed')
        .where('delivery_id', '=', sql<string>`any(array(select id from replayed))`)
        .returning('delivery_id'),
    )
    .with('due', (db) =>
      db
        .insertInto('webhook_due')
        .columns(['delivery_id', 'endpoint_id', 'next_attempt_at', 'created_at'])
        .expression((eb) =>
          eb
            .selectFrom('replayed')
            .select(['id', 'endpoint_id', sql<Date>`${now}::timestamptz`.as('at'), 'created_at']),
        )
        .onConflict((oc) =>
          oc
            .column('delivery_id')
            .doUpdateSet((eb) => ({ next_attempt_at: eb.ref('excluded.next_attempt_at') })),
        )
        .returning('delivery_id'),
    )
    .selectFrom('due')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(result.n);
}

// ---- Retention: deliveries hold image metadata ----

/** Deletes the deliveries about these images, in the purge's transaction; one image id per row deleted. */
export async function deleteForImages(trx: Db, imageIds: string[]): Promise<string[]> {
  if (imageIds.length === 0) return [];
  const { rows } = await sql<{ image_id: string }>`
    with gone as (
      delete from webhook_deliveries where image_id in (${sql.join(imageIds)})
      returning id, image_id, endpoint_id, created_at),
    ${forgetGone()}
    select image_id from gone`.execute(trx);
  return rows.map((r) => r.image_id);
}

/**
 * Deletes deliveries older than their customer's retention window (a customer's own window when
 * shorter than the platform's): those whose image went already (erasure and expiry events) and test
 * events. Returns how many.
 */
export async function pruneExpired(db: Db, now: Date, platformMs: number): Promise<number> {
  const result = await sql<{ n: string }>`
    with gone as (
      delete from webhook_deliveries d
       using (select d2.id from webhook_deliveries d2 left join customers c on c.id = d2.customer_id
               where d2.created_at < ${now}::timestamptz - least(coalesce(c.retention_ms, ${platformMs}),
                     ${platformMs}) * interval '1 millisecond') old
       where d.id = old.id
      returning d.id, d.endpoint_id, d.created_at),
    ${forgetGone()},
    -- The counts of days before the window, once nothing is left in them (what this statement
    -- deletes is taken out of them in the same statement, and seen by the next one).
    emptied as (
      delete from webhook_written_daily w
       where (w.day, w.endpoint_id) in (
               select e.day, e.endpoint_id from webhook_written_daily e
                where e.day < ((${now}::timestamptz - ${platformMs} * interval '1 millisecond') at time zone 'UTC')::date
                group by 1, 2 having sum(e.written) = 0))
    select count(*) as n from gone`.execute(db);
  return Number(result.rows[0]?.n ?? 0);
}

/** What the audit looks for: deliveries past their window, and deliveries about an image that is gone. */
export async function auditDeliveries(
  db: Db,
  now: Date,
  platformMs: number,
): Promise<{ expired: number; oldest: Date | null; orphaned: number }> {
  const expired = await sql<{ n: string; oldest: Date | null }>`
    select count(*) as n, min(d.created_at) as oldest from webhook_deliveries d
      left join customers c on c.id = d.customer_id
     where d.created_at < ${now}::timestamptz - least(coalesce(c.retention_ms, ${platformMs}),
           ${platformMs}) * interval '1 millisecond'`.execute(db);
  const orphaned = await sql<{ n: string }>`
    select count(*) as n from webhook_deliveries d
     where d.image_id is not null
       and d.event_type not in (${sql.join([...END_OF_IMAGE_EVENTS])})
       and not exists (select 1 from images i where i.id = d.image_id)`.execute(db);
  return {
    expired: Number(expired.rows[0]?.n ?? 0),
    oldest: expired.rows[0]?.oldest ?? null,
    orphaned: Number(orphaned.rows[0]?.n ?? 0),
  };
}

// ---- Observability ----

/** Deliveries waiting (pending), for the backlog gauge. */
export async function countPending(db: Db): Promise<number> {
  const row = await db
    .selectFrom('webhook_due')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/**
 * Per customer, the deliveries written in [from, to) by status: the operators' dashboard panel.
 * The customers with the most deliveries first. `from` and `to` are whole UTC days.
 *
 * Read from counts, not from the deliveries: those written, by endpoint and day
 * (webhook_written_daily, added to as deliveries are written and taken from as they are deleted), less
 * the pending ones (webhook_due) and the failed ones (webhook_failed), which are the rest's
 * complement (a delivery is pending, delivered or failed). Counting the deliveries read every one in
 * the range, payloads and all: 138-162 ms for 200,000.
 */
export async function outcomesByCustomer(
  db: Db,
  range: { from: Date; to: Date; customerId?: string | undefined; limit: number },
): Promise<Array<{ customer_id: string; delivered: string; failed: string; pending: string }>> {
  const { from, to } = range;
  const ofCustomer = range.customerId ? sql`and e.customer_id = ${range.customerId}` : sql``;
  const { rows } = await sql<{ customer_id: string; delivered: string; failed: string; pending: string }>`
    with written as (
      select e.customer_id, sum(c.written) as n
        from webhook_written_daily c join webhook_endpoints e on e.id = c.endpoint_id
       where c.day >= (${from}::timestamptz at time zone 'UTC')::date
         and c.day < (${to}::timestamptz at time zone 'UTC')::date ${ofCustomer}
       group by e.customer_id having sum(c.written) > 0),
    pending as (
      select e.customer_id, count(*) as n
        from webhook_due q join webhook_endpoints e on e.id = q.endpoint_id
       where q.created_at >= ${from} and q.created_at < ${to} ${ofCustomer}
       group by e.customer_id),
    failed as (
      select e.customer_id, count(*) as n
        from webhook_failed f join webhook_endpoints e on e.id = f.endpoint_id
             join webhook_deliveries d on d.id = f.delivery_id and d.status = 'failed'
       where f.created_at >= ${from} and f.created_at < ${to} ${ofCustomer}
       group by e.customer_id)
    select w.customer_id, (w.n - coalesce(p.n, 0) - coalesce(f.n, 0))::text as delivered,
           coalesce(f.n, 0)::text as failed, coalesce(p.n, 0)::text as pending
      from written w left join pending p on p.customer_id = w.customer_id
           left join failed f on f.customer_id = w.customer_id
     order by w.n desc, w.customer_id
     limit ${range.limit}`.execute(db);
  return rows;
}
