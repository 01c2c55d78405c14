import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pino from 'pino';
import { createCustomer } from '../../src/catalog/customers.ts';
import { connect, type Db, migrate } from '../../src/catalog/database.ts';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import {
  addDeliveries,
  type ClaimedDelivery,
  claimDue,
  explainClaimDue,
  type Held,
  listDeliveries,
  recordAttempts,
  replay,
} from '../../src/catalog/webhook-deliveries.ts';
import { insertEndpoint, releaseEndpoints } from '../../src/catalog/webhooks.ts';
import { newSecret } from '../../src/webhooks/signing.ts';

// catalog/webhook-deliveries.ts against a backlog, on a PostgreSQL of the test's own: the
// dispatcher's claim (what it skips, and that its cost does not grow with the backlog) and the
// delivery log's failed deliveries (webhook_failed).
const log = pino({ level: 'silent' });
const BACKLOG = 3000;
const holder = 'dddddddd-0000-4000-8000-dddddddddddd';
let root: string;
let postgres: EmbeddedDatabase;
let db: Db;
let big: string;
let small: string;
let logged: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-webhook-claim-'));
  postgres = await startEmbeddedPostgres(root, log, 0);
  db = connect(postgres.url).db;
  await migrate(db, log);
  const customerId = (await createCustomer(db, 'Claims')).customer.id;
  const endpoint = async (n: number) =>
    (
      await insertEndpoint(db, {
        id: crypto.randomUUID(),
        customerId,
        url: `https://receiver.example/${n}`,
        description: null,
        events: ['image.processed'],
        secret: newSecret(),
      })
    ).id;
  big = await endpoint(1);
  small = await endpoint(2);
  logged = await endpoint(3);
  const due = (endpointId: string, count: number, from: number) =>
    Array.from({ length: count }, (_, i) => ({
      endpointId,
      customerId,
      imageId: null,
      eventType: 'image.processed',
      payload: JSON.stringify({ type: 'image.processed', n: from + i }),
    }));
  // Each 500 a second apart: the claim takes the oldest due first.
  const start = Date.now() - BACKLOG * 1000;
  for (let i = 0; i < BACKLOG; i += 500)
    await addDeliveries(db, due(big, 500, i), new Date(start + i * 1000));
  await addDeliveries(db, due(small, 5, 0), new Date(start));
  await sql`analyze webhook_due`.execute(db);
  await sql`analyze webhook_deliveries`.execute(db);
  await sql`analyze webhook_endpoints`.execute(db);
});

after(async () => {
  await db?.destroy();
  await postgres?.stop();
  await rm(root, { recursive: true, force: true });
});

/** What a dispatcher holds after claiming `claimed`: every one waiting, by endpoint. */
function holding(claimed: ClaimedDelivery[]): Held {
  const ids = new Map<string, string[]>();
  for (const d of claimed) ids.set(d.endpointId, [...(ids.get(d.endpointId) ?? []), d.id]);
  return { ids, byEndpoint: new Map([...ids].map(([e, list]) => [e, list.length])) };
}

describe("the webhook dispatcher's claim", () => {
  it('skips what the dispatcher holds, and an endpoint it holds all of', async () => {
    const claim = (held: Held) => claimDue(db, { holder, limit: 256, ahead: 2000, leaseMs: 60_000, held });
    const first = await claim(holding([]));
    const of = (claimed: ClaimedDelivery[], endpoint: string) =>
      claimed.filter((d) => d.endpointId === endpoint);
    assert.equal(of(first, small).length, 5, 'the small endpoint gets its five');
    assert.equal(of(first, big).length, 128, 'the big one its share of the room (half)');
    const second = await claim(holding(first));
    const firstIds = new Set(first.map((d) => d.id));
    assert.equal(second.filter((d) => firstIds.has(d.id)).length, 0, 'nothing held is read again');
    assert.equal(of(second, small).length, 0, 'the small endpoint has nothing more');
    assert.equal(of(second, big).length, 256, 'the big one all the room');
    assert.ok(
      second.every((d) => JSON.parse(d.payload).n < 500),
      'still the oldest due: the first 500 were written first',
    );
    await releaseEndpoints(db, holder);
  });

  it('looks into the due table by its index, not through the whole backlog', async () => {
    const held = holding(
      await claimDue(db, { holder, limit: 256, ahead: 2000, leaseMs: 60_000, held: holding([]) }),
    );
    const plan = await explainClaimDue(db, { holder, limit: 256, ahead: 2000, leaseMs: 60_000, held });
    await releaseEndpoints(db, holder);
    assert.doesNotMatch(plan, /Seq Scan on webhook_due/, plan);
    assert.match(plan, /Index Scan using webhook_due_endpoint/, plan);
  });
});

describe('the delivery log', () => {
  it('lists pending and failed deliveries by their own tables, page by page, and a replay moves them', async () => {
    const loggedHolder = 'eeeeeeee-0000-4000-8000-eeeeeeeeeeee';
    const customerId = (
      await sql<{ id: string }>`
      select customer_id as id from webhook_endpoints where id = ${logged}`.execute(db)
    ).rows[0]!.id;
    await addDeliveries(
      db,
      Array.from({ length: 300 }, (_, n) => ({
        endpointId: logged,
        customerId,
        imageId: null,
        eventType: 'image.processed',
        payload: JSON.stringify({ n }),
      })),
      new Date(),
    );
    const claimed = (
      await claimDue(db, {
        holder: loggedHolder,
        limit: 1000,
        ahead: 1000,
        leaseMs: 60_000,
        held: holding([]),
      })
    ).filter((d) => d.endpointId === logged);
    assert.equal(claimed.length, 300);
    const pendingIds = async () =>
      new Set((await listDeliveries(db, logged, { status: 'pending', limit: 1000 })).rows.map((d) => d.id));
    assert.equal((await pendingIds()).size, 300, 'all pending, listed by webhook_due');
    const at = new Date().toISOString();
    const failing = new Set(
      claimed
        .slice(0, 300)
        .filter((_, i) => i % 50 === 7)
        .map((d) => d.id),
    );
    const recorded = await recordAttempts(
      db,
      loggedHolder,
      claimed.map((d) => ({
        id: d.id,
        endpointId: d.endpointId,
        attempt: { at, statusCode: failing.has(d.id) ? 400 : 204, error: null, latencyMs: 1 },
        next: {
          status: failing.has(d.id) ? ('failed' as const) : ('delivered' as const),
          nextAttemptAt: null,
        },
      })),
    );
    await releaseEndpoints(db, loggedHolder);
    await releaseEndpoints(db, holder);
    assert.equal(recorded.size, 300);
    assert.equal(failing.size, 6);
    assert.equal((await pendingIds()).size, 0);

    const first = await listDeliveries(db, logged, { status: 'failed', limit: 4 });
    assert.equal(first.rows.length, 4);
    assert.ok(first.next, 'a cursor to the rest');
    const [cursorAt, cursorId] = first.next.split('_');
    const rest = await listDeliveries(db, logged, {
      status: 'failed',
      limit: 4,
      after: { at: new Date(Number(cursorAt)), id: cursorId! },
    });
    assert.equal(rest.rows.length, 2);
    assert.equal(rest.next, undefined);
    const listed = [...first.rows, ...rest.rows];
    assert.deepEqual(new Set(listed.map((d) => d.id)), failing);
    assert.ok(listed.every((d) => d.status === 'failed'));
    const order = listed.map((d) => `${d.created_at.toISOString()} ${d.id}`);
    assert.deepEqual(order, [...order].sort(), 'by time, then id');
    assert.equal((await listDeliveries(db, logged, { status: 'delivered', limit: 1000 })).rows.length, 294);

    const now = new Date();
    const replayed = await replay(
      db,
      logged,
      { from: new Date(0), to: new Date(now.getTime() + 60_000), status: 'failed' },
      now,
    );
    assert.equal(replayed, 6);
    assert.equal((await listDeliveries(db, logged, { status: 'failed', limit: 10 })).rows.length, 0);
    assert.deepEqual(await pendingIds(), failing, 'the replayed ones are pending, and only they');
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from webhook_failed where endpoint_id = ${logged}`.execute(db);
    assert.equal(rows[0]!.n, 0, 'their failed rows went with the replay');
  });
});
