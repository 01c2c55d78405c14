import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../../src/clock.ts';
import { jpeg } from '../fixtures/images.ts';
import {
  ADMIN,
  api,
  auditOf,
  cli,
  createCustomer,
  startTestServer,
  type TestServer,
  until,
} from './harness.ts';
import { brokers, createTopics, produce } from './kafka-broker.ts';

const run = randomUUID().slice(0, 8);
const TOPIC = `replay-${run}`;
let bootstrap: string;
let stopBroker: () => void;
let t: TestServer;
let env: Record<string, string>;

before(async () => {
  ({ bootstrap, stop: stopBroker } = brokers());
  await createTopics(bootstrap, [TOPIC], 1);
  env = {
    IMAGELAKE_KAFKA_BROKERS: bootstrap,
    IMAGELAKE_KAFKA_TOPICS: TOPIC,
    IMAGELAKE_KAFKA_GROUP: `imagelake-${run}`,
  };
  t = await startTestServer(env);
});
after(async () => {
  await t?.stop();
  stopBroker?.();
});

const kafkaImages = async (customerId: string) =>
  (await api(t.url, ADMIN, 'GET', `/v1/images?customerId=${customerId}&limit=100`)).body.images.length;
const replay = (...args: string[]) =>
  cli(['kafka', 'replay-dlq', ...args], { ...env, IMAGELAKE_DATA_DIR: t.dataDir });

describe('replaying dead letters', () => {
  it('lands dead letters once their cause is fixed, once each, and reports what it skipped', async () => {
    const c = await createCustomer(t.url, 'Over quota');
    const capped = await api(t.url, ADMIN, 'PATCH', `/v1/customers/${c.id}`, {
      limits: { monthlyImages: 1 },
    });
    assert.equal(capped.status, 200, JSON.stringify(capped.body));
    const message = async (i: number, headers: Record<string, string>) => ({
      key: `k${i}`,
      value: await jpeg({ seed: 300 + i, width: 40 + i }),
      headers,
    });
    await produce(bootstrap, TOPIC, [
      await message(1, { 'customer-id': c.id, 'message-id': 'replay-1' }),
      await message(2, { 'customer-id': c.id, 'message-id': 'replay-2' }),
      // No message-id: the replay must keep the original topic/partition/offset as its key.
      await message(3, { 'customer-id': c.id }),
      await message(4, {}),
    ]);
    const failures = await until('three dead letters recorded', async () => {
      const body = (await api(t.url, ADMIN, 'GET', '/v1/failures')).body;
      return body.totals.deadLetters === 3 ? body : undefined;
    });
    assert.equal(await kafkaImages(c.id), 1, 'the quota let one in');
    const quota = failures.codes.find((g: any) => g.code === 'QUOTA_EXCEEDED');
    assert.equal(quota.deadLetters, 2);
    assert.deepEqual(
      quota.examples.map((e: any) => [e.kind, e.topic, e.customerId, e.replayedAt]),
      [
        ['dead-letter', TOPIC, c.id, null],
        ['dead-letter', TOPIC, c.id, null],
      ],
    );
    assert.equal(failures.codes.find((g: any) => g.code === 'MISSING_CUSTOMER').deadLetters, 1);
    const own = (await api(t.url, c.apiKey, 'GET', '/v1/failures')).body;
    assert.equal(own.totals.deadLetters, 2, 'a customer sees the dead letters that name it');

    const dry = await replay('--code', 'QUOTA_EXCEEDED', '--dry-run');
    assert.equal(dry.code, 0, dry.out);
    assert.match(dry.out, /3 dead letters read; would replay 2/);
    assert.match(dry.out, /skipped: 1 of another code/);

    // The cause is fixed: the quota is lifted. Then the replay lands both, once.
    await api(t.url, ADMIN, 'PATCH', `/v1/customers/${c.id}`, { limits: { monthlyImages: 0 } });
    const first = await replay('--code', 'QUOTA_EXCEEDED');
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /replayed 2/);
    await until('three images', async () => (await kafkaImages(c.id)) === 3);

    const second = await replay('--code', 'QUOTA_EXCEEDED');
    assert.match(second.out, /replayed 0/);
    assert.match(second.out, /2 replayed before/);
    // Forced again: produced again with the same message-ids, and nothing lands twice.
    const again = await replay('--code', 'QUOTA_EXCEEDED', '--again');
    assert.match(again.out, /replayed 2/);
    await until('both seen as duplicates', async () =>
      new RegExp(`imagelake_kafka_messages_total\\{topic="${TOPIC}",outcome="duplicate"\\} 2`).test(
        await (await fetch(`${t.url}/metrics`)).text(),
      ),
    );
    assert.equal(await kafkaImages(c.id), 3);
    const after = (await api(t.url, ADMIN, 'GET', '/v1/failures?code=QUOTA_EXCEEDED')).body;
    assert.ok(after.codes[0].examples.every((e: any) => e.replayedAt));
    assert.equal(after.totals.deadLetters, 2, 'the replayed letters did not come back');

    const bad = await replay('--since', 'yesterday-ish');
    assert.equal(bad.code, 2, bad.out);

    // Past the window (7 days by default) the records go with the purge, under their own ledger kind,
    // and until then the audit names them.
    const backdated = await t.server.db
      .updateTable('dead_letters')
      .set({ dead_lettered_at: new Date(Date.now() - 8 * 86_400_000) })
      .executeTakeFirst();
    assert.ok(Number(backdated.numUpdatedRows) >= 2);
    const auditNow = () => auditOf(t, systemClock);
    assert.deepEqual(
      (await auditNow()).findings.filter((f) => f.kind === 'expired-dead-letters').map((f) => f.subject),
      ['dead_letters'],
    );
    const receipt = await t.server.purgeNow();
    assert.equal(receipt?.body.deleted['dead-letter']?.count, Number(backdated.numUpdatedRows));
    assert.deepEqual(
      (await auditNow()).findings.filter((f) => f.kind === 'expired-dead-letters'),
      [],
    );
  });
});
