import { Producer } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { Db } from '../catalog/database.ts';
import { countWaiting, takeBatch } from '../catalog/outbox.ts';
import type { KafkaConfig } from '../config/config.ts';
import { connectionOptions } from '../ingest/kafka/client.ts';
import { explain, ProblemReporter } from '../ingest/kafka/problems.ts';
import { ensureTopics, eventsTopics, missingTopicsError } from '../ingest/kafka/topics.ts';
import type { Metrics } from '../observability/metrics.ts';
import { batchSpans } from '../observability/tracing.ts';

/**
 * Publishes the outbox: events written with each outcome, sent in order and deleted once Kafka has
 * them. Rows are taken with SKIP LOCKED, so any number of processes can publish side by side. A
 * crash between send and delete sends an event again: consumers see at-least-once, keyed by image id.
 * When Kafka cannot take them (missing topic, login, certificate), the events wait in the outbox:
 * one warning says why, `imagelake_kafka_problem{part="events"}` and `imagelake_events_outbox` show
 * it, and publishing is tried again with backoff.
 */
export class EventPublisher {
  private readonly db: Db;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly config: KafkaConfig;
  private readonly problems: ProblemReporter;
  /** Whether the events topic was seen (or made); checked again after a send says it is gone. */
  private topicChecked = false;
  private failures = 0;
  private nextTry = 0;
  private readonly producer: Producer<Buffer, Buffer, Buffer, Buffer>;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> | undefined;

  constructor(deps: { db: Db; log: Logger; metrics: Metrics; config: KafkaConfig }) {
    this.db = deps.db;
    this.log = deps.log;
    this.metrics = deps.metrics;
    this.config = deps.config;
    this.problems = new ProblemReporter('events', deps.log, deps.metrics);
    this.producer = new Producer({ ...connectionOptions(deps.config, 'events'), acks: -1 });
  }

  start(intervalMs = 250): void {
    this.timer = setInterval(() => {
      if (!this.busy)
        this.busy = this.publish()
          .then(() => {})
          .finally(() => (this.busy = undefined));
    }, intervalMs);
  }

  /** For /readyz: nothing when events are published, else why not and what to do. */
  problem(): string | undefined {
    return this.problems.problem?.message;
  }

  async publish(): Promise<number> {
    if (Date.now() < this.nextTry) return 0;
    let sent = 0;
    try {
      if (!this.topicChecked) {
        const missing = await ensureTopics(this.config, eventsTopics(this.config), this.log);
        if (missing.length) throw missingTopicsError(this.config, missing);
        this.topicChecked = true;
      }
      for (;;) {
        const published = await takeBatch(this.db, 200, async (rows) => {
          // Each event's publish continues its image's trace, and its message carries the traceparent on.
          const spans = batchSpans(
            'imagelake.event publish',
            rows.map((r) => r.traceparent),
            (i) => ({
              'messaging.system': 'kafka',
              'messaging.destination.name': rows[i]!.topic,
              'imagelake.event.type': String(rows[i]!.payload.type),
              'imagelake.image.id': rows[i]!.key,
            }),
          );
          try {
            await this.producer.send({
              messages: rows.map((r, i) => ({
                topic: r.topic,
                key: Buffer.from(r.key),
                value: Buffer.from(JSON.stringify(r.payload)),
                headers: new Map([
                  [Buffer.from('type'), Buffer.from(String(r.payload.type))],
                  ...Object.entries(spans.headers(i)).map(
                    ([k, v]) => [Buffer.from(k), Buffer.from(v)] as const,
                  ),
                ]),
              })),
            });
            spans.end();
          } catch (error) {
            // The reason the problem report gives (topic_missing, auth, ...): stable, like an error code.
            spans.end({ code: explain(error, this.config).reason, message: (error as Error).message });
            throw error;
          }
        });
        for (const r of published) this.metrics.eventsPublished.inc({ type: String(r.payload.type) });
        const n = published.length;
        sent += n;
        if (n === 0) break;
      }
      this.failures = 0;
      if (this.problems.problem) {
        this.metrics.eventsWaiting.set(0);
        this.problems.resolved(`publishing events to ${this.config.eventsTopic} again`);
      }
      return sent;
    } catch (error) {
      const problem = explain(error, this.config);
      this.failures++;
      this.nextTry = Date.now() + Math.min(30_000, 500 * 2 ** Math.min(this.failures, 6));
      if (problem.reason === 'topic_missing' && this.topicChecked) {
        // The topic went away after it was seen: look again (and create it if allowed) next time.
        this.topicChecked = false;
      }
      const waiting = await this.waiting();
      if (waiting !== undefined) this.metrics.eventsWaiting.set(waiting);
      this.problems.report(
        { ...problem, message: `${problem.message} Events wait in the outbox until then.` },
        { waiting },
      );
      return sent;
    }
  }

  private async waiting(): Promise<number | undefined> {
    try {
      return await countWaiting(this.db);
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.busy;
    await this.publish();
    await this.producer.close().catch(() => {});
  }
}
