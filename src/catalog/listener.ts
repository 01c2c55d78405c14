import pg from 'pg';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import { NOTIFY_CHANNEL } from './queue.ts';

export interface JobListenerOptions {
  url: string;
  ssl?: pg.ClientConfig['ssl'];
  log: Logger;
  metrics: Pick<Metrics, 'jobListenerConnected' | 'jobListenerReconnects'>;
  /** The first wait before connecting again; it doubles with each failed try, up to maxDelayMs. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * The one LISTEN session of a worker process, which wakes the runner when a job is queued. When
 * PostgreSQL goes away (a restart, a failover) the session is connected again with backoff, and the
 * runner's polling covers the gap. A new session is opened only once the one before it is gone
 * (node-postgres reports one loss as both 'error' and 'end'), so a process never holds two.
 */
export class JobListener {
  private readonly wakes: Array<() => void> = [];
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private everConnected = false;
  private closed = false;
  private readonly options: JobListenerOptions;

  constructor(options: JobListenerOptions) {
    this.options = options;
  }

  start(): void {
    void this.connect();
  }

  subscribe(wake: () => void): void {
    this.wakes.push(wake);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.options.metrics.jobListenerConnected.set(0);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private wakeAll(): void {
    for (const wake of this.wakes) wake();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const { log, metrics } = this.options;
    // TCP keepalive: a session whose server vanished without a word is noticed, not trusted forever.
    const client = new pg.Client({
      connectionString: this.options.url,
      ssl: this.options.ssl,
      keepAlive: true,
    });
    let lost = false;
    const onLost = (error?: unknown) => {
      if (lost) return;
      lost = true;
      if (this.client === client) {
        this.client = undefined;
        metrics.jobListenerConnected.set(0);
      }
      client.removeAllListeners('notification');
      void client.end().catch(() => {});
      if (this.closed) return;
      log.warn(
        { err: error, retryInMs: this.nextDelay() },
        'job notifications lost; polling while reconnecting',
      );
      this.reconnectLater();
    };
    client.on('notification', () => this.wakeAll());
    client.on('error', onLost);
    client.on('end', () => onLost());
    try {
      await client.connect();
      await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch (error) {
      onLost(error);
      return;
    }
    if (lost) return;
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.failures = 0;
    metrics.jobListenerConnected.set(1);
    if (this.everConnected) {
      metrics.jobListenerReconnects.inc();
      log.info('job notifications restored');
    }
    this.everConnected = true;
    // Jobs queued while the session was down notified no one: look for them now.
    this.wakeAll();
  }

  private nextDelay(): number {
    const { minDelayMs = 250, maxDelayMs = 30_000 } = this.options;
    return Math.min(maxDelayMs, minDelayMs * 2 ** this.failures);
  }

  private reconnectLater(): void {
    if (this.timer || this.closed) return;
    // Jitter, so the workers of a deployment do not all reconnect in the same instant.
    const delay = this.nextDelay() * (0.5 + Math.random() / 2);
    this.failures++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, delay);
    this.timer.unref();
  }
}
