import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { jpeg } from '../fixtures/images.ts';
import { createCustomer, type TestServer, until } from './harness.ts';
import { produce } from './kafka-broker.ts';
import { topicServer } from './kafka-server.ts';

// What a consumer holds: IMAGELAKE_KAFKA_CONCURRENCY messages being written to the lake, and up to
// four times as many in hand altogether, those written waiting for their catalog transaction.
let t: TestServer;
let bootstrap: string;
let TOPIC: string;
let stop: (() => Promise<void>) | undefined;
let customer: { id: string };

before(async () => {
  ({
    t,
    bootstrap,
    topic: TOPIC,
    stop,
  } = await topicServer('in-hand', {
    IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
    IMAGELAKE_KAFKA_CONCURRENCY: '1',
  }));
  customer = await createCustomer(t.url, 'In hand');
});
after(async () => {
  await stop?.();
});

async function rawObjects(): Promise<number> {
  let n = 0;
  for await (const _ of t.server.lake.list('raw/')) n++;
  return n;
}

async function landed(): Promise<number> {
  const row = await t.server.db
    .selectFrom('images')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

describe('Kafka messages in hand', () => {
  it('writes the next messages while the written ones wait for the catalog, up to four times the concurrency', async () => {
    // The catalog holds every landing's insert until released: the lake shows what was written.
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const holding = t.server.db.transaction().execute(async (trx) => {
      await sql`LOCK TABLE images IN EXCLUSIVE MODE`.execute(trx);
      locked();
      await released;
    });
    await isLocked;
    try {
      const messages = [];
      for (let i = 0; i < 6; i++)
        messages.push({
          value: await jpeg({ width: 30 + i, height: 20, seed: i }),
          headers: { 'customer-id': customer.id, 'message-id': `h-${i}` },
        });
      await produce(bootstrap, TOPIC, messages);
      // With one write at a time, four messages (the first one's write included) are written
      // and wait; the fifth is not taken until one of them is recorded.
      await until('four written', async () => (await rawObjects()) === 4, 20_000);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await rawObjects(), 4, 'no more than four messages in hand');
      assert.equal(await landed(), 0, 'nothing recorded while the catalog is held');
    } finally {
      release();
      await holding;
    }
    await until('all six landed', async () => (await landed()) === 6, 20_000);
    assert.equal(await rawObjects(), 6, 'one object per message');
  });
});
