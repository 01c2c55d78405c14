import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { jpeg } from '../fixtures/images.ts';
import { createCustomer, startTestServer, type TestServer, until } from './harness.ts';
import { brokers, createTopics, produce } from './kafka-broker.ts';

const run = randomUUID().slice(0, 8);
const TOPIC = `images-${run}`;
const BULK = `backfill-${run}`;
let bootstrap: string;
let stopBroker: () => void;
let t: TestServer;

before(async () => {
  ({ bootstrap, stop: stopBroker } = brokers());
  await createTopics(bootstrap, [TOPIC, BULK], 1);
  // No worker: the jobs stay queued, to be looked at.
  t = await startTestServer(
    {
      IMAGELAKE_KAFKA_BROKERS: bootstrap,
      IMAGELAKE_KAFKA_TOPICS: TOPIC,
      IMAGELAKE_KAFKA_BULK_TOPICS: BULK,
      IMAGELAKE_KAFKA_GROUP: `imagelake-${run}`,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
    },
    ['api', 'kafka'],
  );
});
after(async () => {
  await t?.stop();
  stopBroker?.();
});

describe('Kafka bulk topics', () => {
  it('consumes IMAGELAKE_KAFKA_BULK_TOPICS too, and queues their images as bulk', async () => {
    const customer = await createCustomer(t.url, 'Kafka backfill');
    const message = async (i: number) => ({
      key: `k${i}`,
      value: await jpeg({ width: 40, height: 30, seed: 300 + i }),
      headers: { 'customer-id': customer.id, 'message-id': `m-${run}-${i}` },
    });
    await produce(bootstrap, TOPIC, [await message(1)]);
    await produce(bootstrap, BULK, [await message(2), await message(3)]);
    const jobs = async () =>
      (
        await sql<{ topic: string; priority: string }>`
          select i.idempotency_key as topic, j.priority from jobs j join images i on i.id = j.image_id
          where j.customer_id = ${customer.id} order by i.idempotency_key`.execute(t.server.db)
      ).rows;
    await until('three messages landed', async () => (await jobs()).length === 3, 60_000);
    assert.deepEqual(
      (await jobs()).map((j) => j.priority),
      ['interactive', 'bulk', 'bulk'],
      'the message from the ordinary topic is interactive, those from the bulk topic bulk',
    );
  });
});
