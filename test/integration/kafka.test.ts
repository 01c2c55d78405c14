import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { runningEmbeddedUrl } from '../../src/catalog/embedded.ts';
import { loadConfig } from '../../src/config/config.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { jpeg, png, webp } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, startTestServer, type TestServer, until } from './harness.ts';
import { brokers, createTopics, header, produce, readTopic } from './kafka-broker.ts';

const run = randomUUID().slice(0, 8);
const TOPIC = `images-${run}`;
const BAD = `bad-${run}`;
const GROUP_TOPIC = `group-${run}`;
const EVENTS = `events-${run}`;
let bootstrap: string;
let stopBroker: () => void;
let t: TestServer;
let customer: { id: string; apiKey: string };

/** The image a Kafka message-id landed, once it has. */
function landedMessage(messageId: string) {
  return until(`message ${messageId} landed`, () =>
    t.server.db
      .selectFrom('images')
      .select('id')
      .where('idempotency_key', '=', `kafka:${messageId}`)
      .executeTakeFirst(),
  );
}

async function kafkaImages(db: RunningServer['db'], where: 'landed' | 'processed'): Promise<number> {
  let query = db
    .selectFrom('images')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('source', '=', 'kafka');
  if (where === 'processed') query = query.where('status', '=', 'processed');
  return Number((await query.executeTakeFirst())?.n ?? 0);
}

function kafkaEnv(topics: string[], extra: Record<string, string> = {}): Record<string, string> {
  return {
    IMAGELAKE_KAFKA_BROKERS: bootstrap,
    IMAGELAKE_KAFKA_TOPICS: topics.join(','),
    IMAGELAKE_KAFKA_GROUP: `imagelake-${run}`,
    IMAGELAKE_KAFKA_EVENTS_TOPIC: EVENTS,
    IMAGELAKE_MAX_BYTES: '300KiB',
    ...extra,
  };
}

before(async () => {
  ({ bootstrap, stop: stopBroker } = brokers());
  await createTopics(bootstrap, [TOPIC, GROUP_TOPIC], 3);
  await createTopics(bootstrap, [BAD, EVENTS], 1);
  t = await startTestServer(kafkaEnv([TOPIC, BAD, GROUP_TOPIC]));
  customer = await createCustomer(t.url, 'Streaming app');
});
after(async () => {
  await t?.stop();
  stopBroker?.();
});

describe('Kafka ingest against a real broker', () => {
  it('lands 200 produced images once each, processes them, counts them as kafka, and announces each', async () => {
    const messages = [];
    for (let i = 0; i < 200; i++) {
      const value =
        i % 3 === 0
          ? await png({ width: 40 + i, height: 30 })
          : i % 3 === 1
            ? await jpeg({ width: 40 + i, height: 30, seed: i })
            : await webp();
      messages.push({
        key: `k${i}`,
        value,
        headers: {
          'customer-id': customer.id,
          'message-id': `m-${i}`,
          filename: `photo-${i}`,
          'content-type': 'image/jpeg',
        },
      });
    }
    await produce(bootstrap, TOPIC, messages);
    // The same messages again, as a producer retry or a redelivery would send them.
    await produce(bootstrap, TOPIC, messages.slice(0, 20));

    await until('200 processed', async () => (await kafkaImages(t.server.db, 'processed')) === 200, 120_000);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await kafkaImages(t.server.db, 'landed'), 200, 'redelivered messages land nothing twice');
    const today = new Date().toISOString().slice(0, 10);
    const stats = (
      await api(
        t.url,
        ADMIN,
        'GET',
        `/v1/stats?from=${today}&to=${today}&groupBy=source,status&customerId=${customer.id}`,
      )
    ).body.rows;
    assert.deepEqual(stats, [{ source: 'kafka', status: 'processed', images: 200, bytes: stats[0].bytes }]);

    const events = await readTopic(
      bootstrap,
      EVENTS,
      (seen) => new Set(seen.map((m) => m.key.toString())).size >= 200,
    );
    const processed = events.map((m) => JSON.parse(m.value.toString()));
    assert.equal(new Set(processed.map((e) => e.id)).size, 200);
    // A message's value is hashed off the event loop (ingest/land.ts): the same SHA-256 as its bytes.
    const sha256 = new Set(messages.map((m) => createHash('sha256').update(m.value).digest('hex')));
    assert.deepEqual(
      processed.filter((e) => !sha256.has(e.checksum)),
      [],
      "every image's checksum is its bytes' SHA-256",
    );
    const first = processed[0];
    assert.equal(first.type, 'image.processed');
    assert.equal(first.source, 'kafka');
    assert.equal(first.customerId, customer.id);
    assert.ok(
      first.width > 0 &&
        first.height > 0 &&
        /^[0-9a-f]{64}$/.test(first.checksum) &&
        first.timings.processingMs >= 0,
    );
    assert.equal(header(events[0]!, 'type'), 'image.processed');
  });

  it('sends every message that can never land to the dead-letter topic with its code, and moves on', async () => {
    const good = await jpeg({ width: 50, height: 40, seed: 500 });
    await t.server.lake.put('claims/big-photo.jpg', good);
    const claim = (body: unknown) => Buffer.from(JSON.stringify(body));
    const bad: Array<[string, Buffer, Record<string, string>]> = [
      ['MISSING_CUSTOMER', good, {}],
      ['UNKNOWN_CUSTOMER', good, { 'customer-id': randomUUID() }],
      ['UNKNOWN_CUSTOMER', good, { 'customer-id': 'not-a-uuid' }],
      [
        'UNSUPPORTED_FORMAT',
        Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'),
        { 'customer-id': customer.id },
      ],
      ['EMPTY_BODY', Buffer.alloc(0), { 'customer-id': customer.id }],
      ['IMAGE_TOO_LARGE', Buffer.concat([good, Buffer.alloc(400 * 1024)]), { 'customer-id': customer.id }],
      ['CLAIM_CHECK_INVALID', Buffer.from('{"ref": '), { 'customer-id': customer.id }],
      ['CLAIM_CHECK_INVALID', claim({ customerId: customer.id }), {}],
      ['CLAIM_CHECK_FORBIDDEN', claim({ ref: 'raw/../../etc/passwd', customerId: customer.id }), {}],
      [
        'CLAIM_CHECK_FORBIDDEN',
        claim({ ref: 's3://someone-elses-bucket/x.jpg', customerId: customer.id }),
        {},
      ],
      [
        'CLAIM_CHECK_FORBIDDEN',
        claim({ ref: 'http://169.254.169.254/latest/meta-data', customerId: customer.id }),
        {},
      ],
      ['CLAIM_CHECK_NOT_FOUND', claim({ ref: 'claims/missing.jpg', customerId: customer.id }), {}],
    ];
    await produce(bootstrap, BAD, [
      ...bad.map(([, value, headers], i) => ({
        value,
        headers: { ...headers, 'message-id': `bad-${i}`, 'x-trace': `t${i}` },
      })),
      {
        value: claim({ ref: 'claims/big-photo.jpg', customerId: customer.id }),
        headers: { 'message-id': 'claim-ok' },
      },
      { value: good, headers: { 'customer-id': customer.id, 'message-id': 'after-the-bad-ones' } },
    ]);

    const dead = await readTopic(bootstrap, `${BAD}.dlq`, (seen) => seen.length >= bad.length);
    // Messages land concurrently, so dead letters come in any order: match them by message-id.
    assert.equal(dead.length, bad.length);
    for (const m of dead) {
      const i = Number(header(m, 'message-id')!.replace('bad-', ''));
      const [code, value] = bad[i]!;
      assert.equal(header(m, 'error-code'), code, `message ${i}`);
      assert.equal(header(m, 'x-trace'), `t${i}`, 'original headers are kept');
      assert.equal(header(m, 'original-topic'), BAD);
      assert.ok(header(m, 'error-message')!.length > 10);
      assert.deepEqual(m.value, value, 'the original value is kept');
    }
    await until('the good messages after them', async () => {
      const row = await t.server.db
        .selectFrom('images')
        .select('id')
        .where('idempotency_key', '=', 'kafka:after-the-bad-ones')
        .executeTakeFirst();
      return row;
    });
    // Messages land concurrently: the claim check may land after the message behind it.
    const claimed = await until('the claim check', () =>
      t.server.db
        .selectFrom('images')
        .select(['filename', 'bytes'])
        .where('idempotency_key', '=', 'kafka:claim-ok')
        .executeTakeFirst(),
    );
    // Its claim object goes right after its row commits.
    await until('the claim consumed', async () => !(await t.server.lake.head('claims/big-photo.jpg')));
    assert.equal(Number(claimed.bytes), good.length);
    assert.equal(
      await t.server.lake.head('claims/big-photo.jpg'),
      undefined,
      'a claim is consumed once landed',
    );
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(`imagelake_kafka_dead_letters_total\\{topic="${BAD}",code="CLAIM_CHECK_FORBIDDEN"\\} 3`),
    );
  });

  it('dead-letters a message whose message-id landed before with other bytes, with IDEMPOTENCY_KEY_REUSED', async () => {
    const first = await jpeg({ seed: 901 });
    const other = await jpeg({ seed: 902 });
    const headers = { 'customer-id': customer.id, 'message-id': 'reused-id' };
    await produce(bootstrap, BAD, [{ value: first, headers }]);
    // Messages of a partition land concurrently: the first must have landed before the others come.
    await until('the first message landed', () =>
      t.server.db
        .selectFrom('images')
        .select('id')
        .where('idempotency_key', '=', 'kafka:reused-id')
        .executeTakeFirst(),
    );
    await produce(bootstrap, BAD, [
      // The same message again (a producer retry): dropped as a duplicate, never dead-lettered.
      { value: first, headers },
      { value: other, headers: { ...headers, 'x-trace': 'the-other-bytes' } },
    ]);
    await until('the retry of the same bytes dropped as a duplicate', async () => {
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      return metrics.includes(`imagelake_kafka_messages_total{topic="${BAD}",outcome="duplicate"} 1`);
    });
    const dead = await readTopic(bootstrap, `${BAD}.dlq`, (seen) =>
      seen.some((m) => header(m, 'message-id') === 'reused-id'),
    );
    const reused = dead.filter((m) => header(m, 'message-id') === 'reused-id');
    assert.equal(reused.length, 1, 'only the message with other bytes is dead-lettered');
    assert.equal(header(reused[0]!, 'error-code'), 'IDEMPOTENCY_KEY_REUSED');
    assert.equal(header(reused[0]!, 'x-trace'), 'the-other-bytes');
    assert.deepEqual(reused[0]!.value, other, 'its bytes are kept in the dead letter, not lost');
    const landed = await t.server.db
      .selectFrom('images')
      .select(['id', 'bytes'])
      .where('idempotency_key', '=', 'kafka:reused-id')
      .execute();
    assert.equal(landed.length, 1);
    assert.equal(Number(landed[0]!.bytes), first.length, 'the first image stays as it landed');
    assert.match(header(reused[0]!, 'error-message')!, new RegExp(landed[0]!.id));
  });

  it('dead-letters an exact re-upload of a customer that rejects duplicates, with DUPLICATE_IMAGE', async () => {
    const strict = await createCustomer(t.url, 'Strict streaming app');
    await api(t.url, ADMIN, 'PATCH', `/v1/customers/${strict.id}`, { duplicates: 'reject' });
    const bytes = await jpeg({ seed: 903 });
    await produce(bootstrap, BAD, [
      { value: bytes, headers: { 'customer-id': strict.id, 'message-id': 'dup-1' } },
    ]);
    const first = await landedMessage('dup-1');
    // Another message (another message-id) with the same bytes: not a retry, a second copy.
    await produce(bootstrap, BAD, [
      { value: bytes, headers: { 'customer-id': strict.id, 'message-id': 'dup-2' } },
    ]);
    const dead = await readTopic(bootstrap, `${BAD}.dlq`, (seen) =>
      seen.some((m) => header(m, 'message-id') === 'dup-2'),
    );
    const copy = dead.find((m) => header(m, 'message-id') === 'dup-2')!;
    assert.equal(header(copy, 'error-code'), 'DUPLICATE_IMAGE');
    assert.match(header(copy, 'error-message')!, new RegExp(first.id));
    assert.deepEqual(copy.value, bytes, 'its bytes are kept in the dead letter');
  });

  it('shares partitions between two consumer processes; a rebalance mid-stream loses and doubles nothing', async () => {
    const url = runningEmbeddedUrl(t.dataDir)!;
    const messages = [];
    for (let i = 0; i < 120; i++) {
      messages.push({
        value: await jpeg({ width: 32, height: 24, seed: 1000 + i }),
        headers: { 'customer-id': customer.id, 'message-id': `g-${i}` },
        partition: i % 3,
      });
    }
    // The first member is consuming when the second joins: the group rebalances with messages in flight.
    await produce(bootstrap, GROUP_TOPIC, messages.slice(0, 60));
    const second = await startServer(
      loadConfig({
        ...kafkaEnv([TOPIC, BAD, GROUP_TOPIC]),
        IMAGELAKE_DATABASE_URL: url,
        IMAGELAKE_DATA_DIR: t.dataDir,
        IMAGELAKE_PORT: '0',
        IMAGELAKE_ADMIN_TOKEN: ADMIN,
        IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
      }),
      { roles: ['api', 'kafka'], log: pino({ level: 'silent' }) },
    );
    try {
      await new Promise((r) => setTimeout(r, 4000));
      await produce(bootstrap, GROUP_TOPIC, messages.slice(60));
      const landed = async () =>
        Number(
          (
            await t.server.db
              .selectFrom('images')
              .select((eb) => eb.fn.countAll<string>().as('n'))
              .where('idempotency_key', 'like', 'kafka:g-%')
              .executeTakeFirst()
          )?.n,
        );
      await until('120 landed', async () => (await landed()) === 120, 60_000);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await landed(), 120, 'nothing lost, nothing doubled');
      const countedBy = async (base: string) => {
        const text = await (await fetch(`${base}/metrics`)).text();
        return Number(
          new RegExp(
            `imagelake_kafka_messages_total\\{topic="${GROUP_TOPIC}",outcome="landed"\\} (\\d+)`,
          ).exec(text)?.[1] ?? 0,
        );
      };
      const [mine, theirs] = [await countedBy(t.url), await countedBy(second.url!)];
      assert.equal(mine + theirs, 120);
      assert.ok(theirs > 0, `the second member took partitions (${mine} and ${theirs})`);
    } finally {
      await second.stop();
    }
  });

  it('pauses consumption while the processing queue is full and resumes when it drains', async () => {
    const topic = `busy-${run}`;
    await createTopics(bootstrap, [topic], 1);
    const busy = await startTestServer(
      {
        ...kafkaEnv([topic], {
          IMAGELAKE_KAFKA_GROUP: `busy-${run}`,
          IMAGELAKE_MAX_QUEUE_DEPTH: '10',
          IMAGELAKE_KAFKA_CONCURRENCY: '2',
          IMAGELAKE_KAFKA_EVENTS_TOPIC: '',
        }),
      },
      ['api', 'kafka'],
    );
    try {
      const c = await createCustomer(busy.url, 'Busy');
      const messages = [];
      for (let i = 0; i < 30; i++)
        messages.push({
          value: await jpeg({ width: 32, height: 24, seed: 2000 + i }),
          headers: { 'customer-id': c.id, 'message-id': `b-${i}` },
        });
      await produce(bootstrap, topic, messages);
      await until(
        'paused',
        async () => /^imagelake_kafka_paused 1$/m.test(await (await fetch(`${busy.url}/metrics`)).text()),
        30_000,
      );
      const held = await kafkaImages(busy.server.db, 'landed');
      assert.ok(held >= 10 && held < 30, `consumption stopped near the limit (${held} landed)`);

      const worker = await startServer(
        loadConfig({
          IMAGELAKE_DATABASE_URL: runningEmbeddedUrl(busy.dataDir)!,
          IMAGELAKE_DATA_DIR: busy.dataDir,
          IMAGELAKE_POLL_INTERVAL: '200ms',
          IMAGELAKE_PORT: '0',
        }),
        { roles: ['worker'], log: pino({ level: 'silent' }) },
      );
      try {
        await until(
          'all 30 processed',
          async () => (await kafkaImages(busy.server.db, 'processed')) === 30,
          90_000,
        );
        // The queue is counted once a second: resuming follows the drain by up to that.
        await until(
          'resumed',
          async () => /^imagelake_kafka_paused 0$/m.test(await (await fetch(`${busy.url}/metrics`)).text()),
          10_000,
        );
      } finally {
        await worker.stop();
      }
    } finally {
      await busy.stop();
    }
  });

  it('imagelake kafka produce streams a folder, large files as claim checks, idempotently', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { spawnSync } = await import('node:child_process');
    const folder = await mkdtemp(join(tmpdir(), 'imagelake-produce-'));
    try {
      await writeFile(join(folder, 'small.jpg'), await jpeg({ width: 60, height: 40, seed: 3000 }));
      // Noise does not compress: a PNG well over the claim-check threshold.
      const { randomBytes } = await import('node:crypto');
      const sharp = (await import('sharp')).default;
      const noisy = await sharp(randomBytes(200 * 150 * 3), { raw: { width: 200, height: 150, channels: 3 } })
        .png()
        .toBuffer();
      assert.ok(noisy.length > 50_000);
      await writeFile(join(folder, 'large.png'), noisy);
      const bin = new URL('../../bin/imagelake.js', import.meta.url).pathname;
      const env = { ...process.env, IMAGELAKE_DATA_DIR: t.dataDir, IMAGELAKE_KAFKA_BROKERS: bootstrap };
      const args = [
        bin,
        'kafka',
        'produce',
        '--customer',
        customer.id,
        '--topic',
        TOPIC,
        '--claim-check-over',
        '50000',
        folder,
      ];
      const first = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
      assert.equal(first.status, 0, first.stderr);
      assert.match(first.stdout, /2 messages to .* \(1 claim checks\)/);
      spawnSync(process.execPath, args, { env, encoding: 'utf8' });
      const rows = async () =>
        t.server.db
          .selectFrom('images')
          .select(['filename', 'status'])
          .where('filename', 'in', ['small.jpg', 'large.png'])
          .execute();
      await until(
        'both processed',
        async () => (await rows()).filter((r) => r.status === 'processed').length === 2,
        30_000,
      );
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await rows()).length, 2, 'producing twice lands once');
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('exports consumer lag', async () => {
    await until(
      'lag gauge',
      async () =>
        new RegExp(`imagelake_kafka_consumer_lag\\{topic="${TOPIC}",partition="0"\\} 0`).test(
          await (await fetch(`${t.url}/metrics`)).text(),
        ),
      20_000,
    );
  });
});
