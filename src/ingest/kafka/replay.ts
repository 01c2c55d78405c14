import { randomUUID } from 'node:crypto';
import { Admin, Consumer, type Message, Producer } from '@platformatic/kafka';
import type { Db } from '../../catalog/database.ts';
import { type DeadLetter, markReplayed, replayedAmong } from '../../catalog/dead-letters.ts';
import type { KafkaConfig } from '../../config/config.ts';
import { connectionOptions } from './client.ts';
import { headersOf } from './contract.ts';

/**
 * Replaying dead letters: each message in `<topic>.dlq` goes back onto the topic it came from (say,
 * once the customer it named has been created), with its original headers and its message-id, so
 * a message that already landed lands nothing twice (the idempotency key is the message-id, or the
 * original topic/partition/offset when it had none, which the replay then sends as its message-id).
 * The dead-letter topics are read from the start to where they ended when the replay began; each
 * replayed letter is marked in the catalog, so a second replay skips it (unless `again`).
 */
export interface ReplayOptions {
  /** Only dead letters of this error code. */
  code?: string;
  /** Only dead letters written at or after this moment. */
  since?: Date;
  /** Count what would be replayed; produce and mark nothing. */
  dryRun?: boolean;
  /** Replay letters replayed before too. */
  again?: boolean;
  onProgress?: (read: number, total: number) => void;
}

export interface ReplaySummary {
  read: number;
  replayed: number;
  /** By code, what was (or, dry, would be) replayed. */
  byCode: Record<string, number>;
  skipped: { otherCode: number; before: number; replayedBefore: number; notADeadLetter: number };
}

type Msg = Message<Buffer, Buffer, Buffer, Buffer>;

/** Headers the dead-letter step added: the replayed message carries the original ones only. */
const ADDED = new Set([
  'error-code',
  'error-message',
  'original-topic',
  'original-partition',
  'original-offset',
]);

function origin(message: Msg): (DeadLetter & { headers: Map<string, string> }) | undefined {
  const headers = headersOf(message.headers);
  const topic = headers.get('original-topic');
  const partition = Number(headers.get('original-partition'));
  const offset = headers.get('original-offset');
  const code = headers.get('error-code');
  if (!topic || !Number.isInteger(partition) || !offset || !/^\d+$/.test(offset) || !code) return undefined;
  return {
    topic,
    partition,
    offset: BigInt(offset),
    customerId: headers.get('customer-id')?.trim() || null,
    messageId: headers.get('message-id') || null,
    code,
    message: headers.get('error-message') ?? '',
    at: new Date(Number(message.timestamp)),
    headers,
  };
}

/** The dead-letter topics that exist, with where each partition ends now. */
async function deadLetterEnds(config: KafkaConfig, consumer: Consumer<Buffer, Buffer, Buffer, Buffer>) {
  const admin = new Admin(connectionOptions(config, 'replay-admin'));
  let existing: Set<string>;
  try {
    existing = new Set(await admin.listTopics());
  } finally {
    await admin.close();
  }
  const topics = config.topics.map((t) => `${t}${config.dlqSuffix}`).filter((t) => existing.has(t));
  if (topics.length === 0) return new Map<string, bigint[]>();
  return consumer.listOffsets({ topics });
}

export async function replayDeadLetters(
  config: KafkaConfig,
  db: Db,
  options: ReplayOptions = {},
): Promise<ReplaySummary> {
  const summary: ReplaySummary = {
    read: 0,
    replayed: 0,
    byCode: {},
    skipped: { otherCode: 0, before: 0, replayedBefore: 0, notADeadLetter: 0 },
  };
  // A group of its own each time: the replay reads every letter, and commits nothing anywhere.
  const consumer = new Consumer({
    ...connectionOptions(config, 'replay'),
    groupId: `${config.groupId}-replay-${randomUUID()}`,
    autocommit: false,
  });
  const producer = options.dryRun
    ? undefined
    : new Producer({ ...connectionOptions(config, 'replay-produce'), acks: -1 });
  try {
    const ends = await deadLetterEnds(config, consumer);
    const left = new Map<string, bigint>();
    let total = 0;
    for (const [topic, partitions] of ends)
      partitions.forEach((end, partition) => {
        if (end > 0n) left.set(`${topic}/${partition}`, end);
        total += Number(end);
      });
    options.onProgress?.(0, total);
    if (left.size === 0) return summary;

    const stream = await consumer.consume({
      topics: [...ends.keys()],
      mode: 'earliest',
      autocommit: false,
      maxWaitTime: 200,
    });
    try {
      for await (const message of stream as AsyncIterable<Msg>) {
        const part = `${message.topic}/${message.partition}`;
        const end = left.get(part);
        if (end === undefined || message.offset >= end) continue; // written after the replay began
        summary.read++;
        await replayOne(message, producer, db, options, summary);
        options.onProgress?.(summary.read, total);
        if (message.offset + 1n >= end) left.delete(part);
        if (left.size === 0) break;
      }
    } finally {
      await stream.close().catch(() => {});
    }
    return summary;
  } finally {
    await consumer.close().catch(() => {});
    await producer?.close().catch(() => {});
  }
}

async function replayOne(
  message: Msg,
  producer: Producer<Buffer, Buffer, Buffer, Buffer> | undefined,
  db: Db,
  options: ReplayOptions,
  summary: ReplaySummary,
): Promise<void> {
  const letter = origin(message);
  if (!letter) {
    summary.skipped.notADeadLetter++;
    return;
  }
  if (options.code && letter.code !== options.code) {
    summary.skipped.otherCode++;
    return;
  }
  if (options.since && letter.at < options.since) {
    summary.skipped.before++;
    return;
  }
  if (!options.again) {
    const done = await replayedAmong(db, [letter]);
    if (done.size) {
      summary.skipped.replayedBefore++;
      return;
    }
  }
  if (producer) {
    const headers = new Map<Buffer, Buffer>();
    for (const [k, v] of letter.headers) if (!ADDED.has(k)) headers.set(Buffer.from(k), Buffer.from(v));
    // Without a message-id, the original landing's key was its topic/partition/offset: keep it.
    if (!letter.messageId)
      headers.set(
        Buffer.from('message-id'),
        Buffer.from(`${letter.topic}/${letter.partition}/${letter.offset}`),
      );
    headers.set(
      Buffer.from('replayed-from'),
      Buffer.from(`${message.topic}/${message.partition}/${message.offset}`),
    );
    await producer.send({
      messages: [
        {
          topic: letter.topic,
          key: message.key ?? undefined,
          value: message.value ?? Buffer.alloc(0),
          headers,
        },
      ],
    });
    await markReplayed(db, letter, new Date());
  }
  summary.replayed++;
  summary.byCode[letter.code] = (summary.byCode[letter.code] ?? 0) + 1;
}
