import { Producer } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { Db } from '../../catalog/database.ts';
import type { KafkaConfig } from '../../config/config.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { connectionOptions } from './client.ts';

/**
 * Publishes the outbox: events written with each outcome, sent in order and deleted once Kafka has
 * them. Rows are taken with SKIP LOCKED, so any number of processes can publish side by side. A
 * crash between send and delete sends an event again: consumers see at-least-once, keyed by image id.
 */
export class EventPublisher {
  private readonly db: Db;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly producer: Producer<Buffer, Buffer, Buffer, Buffer>;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> | undefined;

  constructor(deps: { db: Db; log: Logger; metrics: Metrics; config: KafkaConfig }) {
    this.db = deps.db;
    this.log = deps.log;
    this.metrics = deps.metrics;
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

  async publish(): Promise<number> {
    let sent = 0;
    try {
      for (;;) {
        const n = await this.db.transaction().execute(async (trx) => {
          const rows = await trx
            .selectFrom('outbox')
            .selectAll()
            .orderBy('id')
            .limit(200)
            .forUpdate()
            .skipLocked()
            .execute();
          if (rows.length === 0) return 0;
          await this.producer.send({
            messages: rows.map((r) => ({
              topic: r.topic,
              key: Buffer.from(r.key),
              value: Buffer.from(JSON.stringify(r.payload)),
              headers: new Map([[Buffer.from('type'), Buffer.from(String(r.payload.type))]]),
            })),
          });
          await trx
            .deleteFrom('outbox')
            .where(
              'id',
              'in',
              rows.map((r) => r.id),
            )
            .execute();
          for (const r of rows) this.metrics.eventsPublished.inc({ type: String(r.payload.type) });
          return rows.length;
        });
        sent += n;
        if (n === 0) return sent;
      }
    } catch (error) {
      this.log.warn({ err: error }, 'publishing events failed; they stay in the outbox and are retried');
      return sent;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.busy;
    await this.publish();
    await this.producer.close().catch(() => {});
  }
}
