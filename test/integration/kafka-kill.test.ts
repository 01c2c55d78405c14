import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/catalog/database.ts';
import { runningEmbeddedUrl } from '../../src/catalog/embedded.ts';
import { FsLake } from '../../src/lake/fs.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, spawnServer, until } from './harness.ts';
import { brokers, createTopics, produce } from './kafka-broker.ts';

const run = randomUUID().slice(0, 8);
const TOPIC = `kill-${run}`;
const MESSAGES = 400;
let bootstrap: string;
let stopBroker: () => void;

before(async () => {
  ({ bootstrap, stop: stopBroker } = brokers());
  await createTopics(bootstrap, [TOPIC], 3);
});
after(() => stopBroker?.());

describe('a kafka process killed while its landings share transactions', () => {
  it('SIGKILL mid-stream, restart: every message lands once, each row with its original in the lake', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-kafka-kill-'));
    // No worker: what is checked is the landing, and the images stay as they landed.
    const roles = ['api', 'kafka'];
    const env = {
      IMAGELAKE_DATA_DIR: dataDir,
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      IMAGELAKE_KAFKA_BROKERS: bootstrap,
      IMAGELAKE_KAFKA_TOPICS: TOPIC,
      IMAGELAKE_KAFKA_GROUP: `imagelake-${run}`,
      IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
    };
    let server = await spawnServer(env, roles);
    try {
      const customer = await createCustomer(server.url, 'Killed mid-stream');
      const landed = async () =>
        (await api(server.url, customer.apiKey, 'GET', '/v1/images?limit=500')).body.images.length as number;
      const messages = [];
      for (let i = 0; i < MESSAGES; i++)
        messages.push({
          value: await jpeg({ width: 48, height: 32, seed: 5000 + i }),
          headers: { 'customer-id': customer.id, 'message-id': `k-${i}`, filename: `k-${i}.jpg` },
          partition: i % 3,
        });
      await produce(bootstrap, TOPIC, messages);
      // Killed with landings in hand: some landed, some in a group's transaction or lake write.
      await until('some messages landed', async () => (await landed()) >= 40, 60_000);
      const beforeKill = await landed();
      server.child.kill('SIGKILL');
      await new Promise((resolve) => server.child.once('exit', resolve));
      assert.ok(beforeKill < MESSAGES, `killed mid-stream (${beforeKill} of ${MESSAGES} had landed)`);

      server = await spawnServer(env, roles);
      await until('every message landed', async () => (await landed()) >= MESSAGES, 90_000);
      const { db, pool } = connect(runningEmbeddedUrl(dataDir)!);
      try {
        const rows = await db
          .selectFrom('images')
          .select(['idempotency_key', 'raw_key'])
          .where('customer_id', '=', customer.id)
          .execute();
        assert.equal(rows.length, MESSAGES, 'each message once');
        assert.deepEqual(
          new Set(rows.map((r) => r.idempotency_key)),
          new Set(messages.map((m) => `kafka:${m.headers['message-id']}`)),
        );
        const lake = new FsLake(join(dataDir, 'lake'));
        for (const row of rows) assert.ok(await lake.head(row.raw_key), `${row.raw_key} is in the lake`);
        const jobs = await db
          .selectFrom('jobs')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('customer_id', '=', customer.id)
          .executeTakeFirstOrThrow();
        assert.equal(Number(jobs.n), MESSAGES, 'each image queued once');
      } finally {
        await pool.end();
      }
    } finally {
      server.child.kill('SIGTERM');
      await new Promise((resolve) => server.child.once('exit', resolve));
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
