import { Consumer, type Message, type MessagesStream, Producer } from '@platformatic/kafka';
import type { Logger } from 'pino';
import { customerExists } from '../../catalog/customers.ts';
import type { Db } from '../../catalog/database.ts';
import { depth } from '../../catalog/queue.ts';
import type { KafkaConfig } from '../../config/config.ts';
import { AppError, PERMANENT_CODES } from '../../errors.ts';
import type { Lake } from '../../lake/port.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { activeSpan, failSpan } from '../../observability/tracing.ts';
import type { Lander } from '../land.ts';
import { connectionOptions } from './client.ts';
import { headersOf, resolveMessage } from './contract.ts';
import { deadLetter } from './dead-letter.ts';
import { inMessageSpan } from './message-span.ts';
import { PartitionOffsets } from './offsets.ts';
import { explain, ProblemReporter } from './problems.ts';
import { ensureTopics, ingestTopics, missingTopicsError } from './topics.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface KafkaIngestDeps {
  config: KafkaConfig;
  db: Db;
  lake: Lake;
  lander: Lander;
  log: Logger;
  metrics: Metrics;
  /** Dead-letter topics keep images no longer than the lake does. */
  retentionMs: number;
  maxQueueDepth: number;
}

type Msg = Message<Buffer, Buffer, Buffer, Buffer>;

/**
 * Messages in hand per process, as a multiple of IMAGELAKE_KAFKA_CONCURRENCY (the messages being
 * written to the lake at once): those written and waiting for their group's catalog transaction
 * make up the rest. Each keeps its value until it is recorded, since a refusal at the catalog
 * (a duplicate, a quota) sends it to the dead-letter topic whole.
 */
const IN_HAND_PER_WRITE = 4;

/**
 * The `kafka` role: consumes the image topics into the same landing as HTTP uploads. At least once
 * from Kafka, exactly once into the catalog: an offset is committed only after its image (and every
 * one before it in the partition) has landed durably, and a redelivered message is dropped by its
 * idempotency key. A message that can never land goes to `<topic>.dlq` and the partition moves on.
 */
export class KafkaIngest {
  private readonly deps: KafkaIngestDeps;
  private consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
  private producer: Producer<Buffer, Buffer, Buffer, Buffer> | undefined;
  private stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  private readonly partitions = new Map<string, PartitionOffsets<Msg>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  /** Messages in hand whose bytes are not in the lake yet (fetched, being checked, hashed, written). */
  private writing = 0;
  private readonly knownCustomers = new Map<string, number>();
  private running = false;
  private queueFull = false;
  /** What imagelake_kafka_paused says. */
  private pausedForQueue: boolean | undefined;
  /** The queue depth at the last count plus what landed since: an upper bound between counts. */
  private estimatedDepth = 0;
  /** Why consumption has not started (broker, login, certificate, topics), for /readyz and the log. */
  private readonly problems: ProblemReporter;
  private connecting: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(deps: KafkaIngestDeps) {
    this.deps = deps;
    this.problems = new ProblemReporter('ingest', deps.log, deps.metrics);
  }

  /**
   * Connects and starts consuming. A broker that cannot be used (unreachable, wrong login, untrusted
   * certificate, missing topics) does not end the process: it stays up, unready with the reason, and
   * tries again with backoff, so fixing the broker side is enough.
   */
  async start(): Promise<void> {
    const { config } = this.deps;
    this.running = true;
    this.producer = new Producer({ ...connectionOptions(config, 'dlq'), acks: -1 });
    this.timers.push(setInterval(() => void this.commit(), 300));
    this.timers.push(setInterval(() => void this.checkQueue(), 1000));
    this.timers.push(setInterval(() => void this.measureLag(), 5000));
    // The first attempt is awaited, so a healthy start returns consuming.
    if (!(await this.connect())) this.connecting = this.retry();
  }

  private async retry(): Promise<void> {
    for (let attempt = 1; this.running; attempt++) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5)));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (!this.running || (await this.connect())) return;
    }
  }

  private async connect(): Promise<boolean> {
    const { config, log, retentionMs } = this.deps;
    let consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
    try {
      const missing = await ensureTopics(config, ingestTopics(config, retentionMs), log);
      if (missing.length) throw missingTopicsError(config, missing);
      consumer = new Consumer({
        ...connectionOptions(config, 'ingest'),
        groupId: config.groupId,
        autocommit: false,
      });
      const stream = await consumer.consume({
        topics: config.topics,
        autocommit: false,
        mode: 'committed',
        fallbackMode: 'earliest',
        sessionTimeout: 20_000,
        heartbeatInterval: 1_000,
        maxWaitTime: 500,
        highWaterMark: config.concurrency,
      });
      if (!this.running) {
        await stream.close().catch(() => {});
        await consumer.close().catch(() => {});
        return true;
      }
      this.consumer = consumer;
      this.stream = stream;
      stream.on('data', (message) => this.accept(message));
      stream.on('error', (error) => log.error({ err: error }, 'Kafka stream error; the client reconnects'));
      this.problems.resolved('Kafka can be used again');
      log.info(
        { brokers: config.brokers, topics: config.topics, group: config.groupId },
        'consuming images from Kafka',
      );
      return true;
    } catch (error) {
      await consumer?.close().catch(() => {});
      this.problems.report(explain(error, config), { topics: config.topics });
      return false;
    }
  }

  private offsetsOf(topic: string, partition: number): PartitionOffsets<Msg> {
    const id = `${topic}:${partition}`;
    let offsets = this.partitions.get(id);
    if (!offsets) {
      offsets = new PartitionOffsets<Msg>();
      this.partitions.set(id, offsets);
    }
    return offsets;
  }

  private accept(message: Msg): void {
    const offsets = this.offsetsOf(message.topic, message.partition);
    offsets.started(message.offset);
    // A message holds a place among those being written until its bytes are in the lake (or it
    // ends otherwise): then the next one is written while this one waits for the catalog.
    this.writing++;
    let writing = true;
    const stored = () => {
      if (!writing) return;
      writing = false;
      this.writing--;
      this.flow();
    };
    const task = this.handle(message, stored).then(
      () => offsets.finished(message.offset, message),
      // Only a shutdown gets here; the offset stays uncommitted and the message comes again.
      (error) =>
        this.deps.log.warn(
          { err: error, topic: message.topic, offset: String(message.offset) },
          'message left for redelivery',
        ),
    );
    this.inFlight.add(task);
    void task.finally(() => {
      this.inFlight.delete(task);
      stored();
      this.flow();
    });
    this.flow();
  }

  /**
   * Pauses the stream while enough messages are being written, too many are in hand, or the
   * processing queue is full.
   */
  private flow(): void {
    if (!this.stream || !this.running) return;
    const { concurrency } = this.deps.config;
    const busy =
      this.writing >= concurrency || this.inFlight.size >= concurrency * IN_HAND_PER_WRITE || this.queueFull;
    if (busy && !this.stream.isPaused()) this.stream.pause();
    if (!busy && this.stream.isPaused()) this.stream.resume();
    // Set only when it changes: this runs several times per message.
    if (this.pausedForQueue !== this.queueFull) {
      this.pausedForQueue = this.queueFull;
      this.deps.metrics.kafkaPaused.set(this.queueFull ? 1 : 0);
    }
  }

  /** One message, in a span that continues the producer's trace when it sent a traceparent header. */
  private handle(message: Msg, stored: () => void): Promise<void> {
    const headers = headersOf(message.headers);
    return inMessageSpan(message, headers, () => this.land(message, headers, stored));
  }

  private async land(message: Msg, headers: Map<string, string>, stored: () => void): Promise<void> {
    const { lander, lake, metrics, log, config } = this.deps;
    const topic = message.topic;
    for (let attempt = 1; ; attempt++) {
      try {
        const resolved = await resolveMessage(
          {
            topic,
            partition: message.partition,
            offset: message.offset,
            value: message.value ?? Buffer.alloc(0),
            headers,
          },
          lake,
          config.claimPrefixes,
        );
        if (!(await this.customerExists(resolved.customerId)))
          throw new AppError('UNKNOWN_CUSTOMER', `"${resolved.customerId.slice(0, 64)}"`);
        const { duplicate } = await lander.land({
          customerId: resolved.customerId,
          source: 'kafka',
          body: resolved.body,
          idempotencyKey: resolved.idempotencyKey,
          filename: resolved.filename,
          priority: config.bulkTopics.includes(topic) ? 'bulk' : 'interactive',
          // A redelivery is rare: its key is found at the insert, not looked up for every message.
          keyCheckedAtInsert: true,
          onStored: stored,
        });
        // The claim is consumed: the image now lives in the lake's raw area under its own key.
        if (resolved.claimKey) await lake.delete(resolved.claimKey);
        metrics.kafkaMessages.inc({ topic, outcome: duplicate ? 'duplicate' : 'landed' });
        if (!duplicate && ++this.estimatedDepth >= this.deps.maxQueueDepth && !this.queueFull) {
          this.queueFull = true;
          this.flow();
        }
        return;
      } catch (error) {
        // Errors the message itself causes: retrying cannot help, so it goes to the dead-letter topic.
        if (error instanceof AppError && PERMANENT_CODES.has(error.code)) {
          failSpan(activeSpan(), error.code, error.message);
          const running = () => this.running;
          await deadLetter({ ...this.deps, producer: this.producer!, running }, message, error);
          return;
        }
        if (!this.running) throw error;
        const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
        log.warn(
          { err: error, topic, partition: message.partition, offset: String(message.offset), attempt },
          `landing failed; retrying in ${delay} ms`,
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async customerExists(id: string): Promise<boolean> {
    if (!UUID.test(id)) return false;
    const seen = this.knownCustomers.get(id);
    if (seen && Date.now() - seen < 60_000) return true;
    const exists = await customerExists(this.deps.db, id);
    if (exists) this.knownCustomers.set(id, Date.now());
    return exists;
  }

  private async commit(): Promise<void> {
    for (const offsets of this.partitions.values()) {
      const message = offsets.take();
      if (!message) continue;
      try {
        await message.commit();
      } catch (error) {
        // After a rebalance the partition may be another member's now; it re-reads from the last commit.
        this.deps.log.debug({ err: error }, 'offset commit refused');
      }
    }
  }

  private async checkQueue(): Promise<void> {
    try {
      const d = await depth(this.deps.db);
      const total = d.queued + d.running;
      this.estimatedDepth = total;
      // Pause at the limit, resume at 80% of it, so the stream does not flap around the threshold.
      if (!this.queueFull && total >= this.deps.maxQueueDepth) this.queueFull = true;
      else if (this.queueFull && total < this.deps.maxQueueDepth * 0.8) this.queueFull = false;
      this.flow();
    } catch (error) {
      this.deps.log.warn({ err: error }, 'could not read the queue depth');
    }
  }

  private async measureLag(): Promise<void> {
    if (!this.consumer) return;
    try {
      const lag = await this.consumer.getLag({ topics: this.deps.config.topics });
      for (const [topic, partitions] of lag) {
        partitions.forEach((value, partition) => {
          if (value >= 0n)
            this.deps.metrics.kafkaLag.set({ topic, partition: String(partition) }, Number(value));
        });
      }
    } catch (error) {
      this.deps.log.debug({ err: error }, 'lag unavailable');
    }
  }

  /** For /readyz: nothing when the consumer is in its group and connected, else why not and what to do. */
  notReady(): string | undefined {
    if (this.problems.problem) return this.problems.problem.message;
    if (!(this.running && this.consumer?.isActive() && this.stream?.isConnected()))
      return 'the Kafka consumer is not connected to its group yet';
    return undefined;
  }

  /** Stops fetching, lets messages in hand land, commits what landed, leaves the group. */
  async stop(graceMs = 20_000): Promise<void> {
    this.running = false;
    for (const timer of this.timers) clearInterval(timer);
    this.wake?.();
    await this.connecting;
    this.stream?.pause();
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((r) => setTimeout(r, graceMs).unref()),
    ]);
    await this.commit();
    await this.stream?.close().catch(() => {});
    try {
      await this.consumer?.close();
    } catch {}
    await this.producer?.close().catch(() => {});
  }
}
