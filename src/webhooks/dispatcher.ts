import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Db } from '../catalog/database.ts';
import type { DeliveryStatus } from '../catalog/schema.ts';
import {
  type ClaimedDelivery,
  claimDue,
  countPending,
  failPending,
  recordAttempts,
} from '../catalog/webhook-deliveries.ts';
import { disableEndpoint, markFailing, markHealthy, releaseEndpoints } from '../catalog/webhooks.ts';
import type { Clock } from '../clock.ts';
import type { WebhookConfig } from '../config/config.ts';
import type { Metrics } from '../observability/metrics.ts';
import { AttemptRecorder } from './attempt-recorder.ts';
import { HeldDeliveries } from './held-deliveries.ts';
import { retryDelay } from './schedule.ts';
import { type AttemptResult, Sender } from './send.ts';
import { secretsInForce, signedHeaders } from './signing.ts';
import { inAttemptSpan, type TracedAttempt } from './trace.ts';

export interface DispatcherDeps {
  db: Db;
  log: Logger;
  metrics: Metrics;
  clock: Clock;
  config: WebhookConfig;
  /** How often to look for due deliveries when idle. */
  pollIntervalMs?: number;
}

/**
 * Rounds of an endpoint's deliveries claimed at once: one claim feeds several rounds of sends, so a
 * fast receiver is not held to a catalog statement per round. 64 rather than 32: half the claims
 * for a fast receiver, and PostgreSQL spent 24-33 µs a delivery in bench:webhooks rather than 29-43
 * (the shared catalog's CPU is what several dispatchers contend for); 128 gained no more. A process
 * then holds up to `concurrency` x 64 deliveries (4,096 by default, about 6 MB of bodies).
 */
const ROUNDS_AHEAD = 64;

/** The longest wait between two claims while they fail. */
const CLAIM_BACKOFF_MAX_MS = 10_000;

/**
 * The `webhooks` role: delivers what the outbox tables hold. It claims endpoints with their due
 * deliveries (catalog/webhook-deliveries.ts `claimDue`: SKIP LOCKED, round robin over endpoints,
 * each endpoint leased to one dispatcher at a time, so its concurrency holds across processes),
 * sends each delivery signed, at most `perEndpoint` at a time per endpoint, and records the attempt
 * only while it still holds the endpoint.
 *
 * A claim takes up to ROUNDS_AHEAD rounds of an endpoint's deliveries and renews its lease; they
 * are sent a round at a time, and the next ones are claimed when half of them have ended. A
 * delivery whose endpoint lease no longer leaves room for an attempt (a slow receiver) is let go
 * unsent, for the next claim. Attempts are recorded in batches, and a slot frees when the receiver
 * answers, not when the record is written. Killed mid-send, nothing is lost: the endpoint's lease
 * runs out and any dispatcher sends its pending deliveries again, with the same webhook-id (at least
 * once). Stopping, it lets the endpoints go once its last attempt is recorded.
 */
export class WebhookDispatcher {
  private readonly deps: DispatcherDeps;
  private readonly sender: Sender;
  private readonly held = new HeldDeliveries();
  /** Attempts not yet recorded: what stop waits for. */
  private readonly unfinished = new Set<Promise<void>>();
  private readonly leaseMs: number;
  /** This dispatcher: the catalog's endpoint leases name it. */
  private readonly holder = randomUUID();
  /** Endpoints the last claim gave deliveries: they may have more due. */
  private readonly mayHaveMore = new Set<string>();
  /** The last claim was cut short by the room left: endpoints it did not reach may have some due. */
  private claimCutShort = false;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private readonly recorder: AttemptRecorder;
  /** A claim is wanted (or stop was asked) while the loop was not asleep: it must not sleep through it. */
  private woken = false;
  private backlogTimer: NodeJS.Timeout | undefined;

  constructor(deps: DispatcherDeps) {
    this.deps = deps;
    const { config } = deps;
    this.sender = new Sender({
      timeoutMs: config.timeoutMs,
      allowPrivate: config.allowPrivate,
      socketsPerHost: config.perEndpoint,
    });
    // Longer than any attempt can take (and its record), so a live dispatcher never loses a
    // delivery it is sending; short enough that a killed one's deliveries go out again soon.
    this.leaseMs = 2 * config.timeoutMs + 1000;
    this.recorder = new AttemptRecorder((records) => recordAttempts(deps.db, this.holder, records));
  }

  start(): void {
    this.loopDone = this.loop();
    const refresh = () =>
      countPending(this.deps.db).then(
        (n) => this.deps.metrics.webhookBacklog.set(n),
        () => {},
      );
    void refresh();
    this.backlogTimer = setInterval(refresh, 5000);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.backlogTimer);
    this.wake();
    await this.loopDone;
    // What waits is let go unsent; every attempt in flight ends within the timeout and is recorded.
    this.held.drain();
    await Promise.allSettled([...this.unfinished]);
    this.sender.close();
    // Then the endpoints are free for another dispatcher at once, rather than when the leases end.
    try {
      await releaseEndpoints(this.deps.db, this.holder);
    } catch (error) {
      this.deps.log.warn(
        { err: error },
        'webhook dispatcher could not let its endpoints go; their leases run out',
      );
    }
  }

  private wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Deliveries one process holds at most: enough rounds to keep every slot busy between claims. */
  private get capacity(): number {
    return this.deps.config.concurrency * ROUNDS_AHEAD;
  }

  private get allowance(): number {
    return this.deps.config.perEndpoint * ROUNDS_AHEAD;
  }

  private async loop(): Promise<void> {
    const { log } = this.deps;
    const pollMs = this.deps.pollIntervalMs ?? 250;
    /** Claims failed in a row (the catalog away): the wait before the next one doubles with each. */
    let failures = 0;
    while (!this.stopping) {
      // Wakes from here on (deliveries ended while claiming) make the sleep below return at once.
      this.woken = false;
      const room = this.capacity - this.held.pending;
      let waitMs = pollMs;
      if (room > 0) {
        try {
          const started = performance.now();
          const claimed = await claimDue(this.deps.db, {
            holder: this.holder,
            limit: room,
            ahead: this.allowance,
            leaseMs: this.leaseMs,
            held: this.held.snapshot(),
          });
          this.held.add(claimed, started + this.leaseMs);
          // An endpoint the claim gave anything may have more; at worst one claim finds nothing.
          this.mayHaveMore.clear();
          for (const delivery of claimed) this.mayHaveMore.add(delivery.endpointId);
          this.claimCutShort = claimed.length >= room;
          if (failures > 0) log.info({ failures }, 'webhook dispatcher claims again');
          failures = 0;
        } catch (error) {
          // Backing off, up to CLAIM_BACKOFF_MAX_MS: an outage of minutes is a few dozen lines in the
          // log, not four a second, and a recovering PostgreSQL is not pressed.
          waitMs = Math.min(CLAIM_BACKOFF_MAX_MS, pollMs * 2 ** failures);
          failures++;
          log.warn(
            { err: error, failures, retryInMs: waitMs },
            'webhook dispatcher could not claim deliveries; trying again',
          );
        }
      }
      this.pump();
      // The next claim waits for half of an endpoint's deliveries to end (a wake) or the next poll.
      await this.sleep(waitMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        this.woken = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  /** Fills the free slots; deliveries whose endpoint lease would end before an attempt could are let go. */
  private pump(): void {
    if (this.stopping) return;
    const { concurrency, perEndpoint, timeoutMs } = this.deps.config;
    const { send, expired } = this.held.take(
      concurrency - this.held.inFlight,
      perEndpoint,
      performance.now() + timeoutMs + 1000,
    );
    for (const delivery of send) this.send(delivery);
    // Still pending in the catalog: the next claim reads them again, and renews the lease.
    for (const delivery of expired) this.claimIfLow(delivery);
  }

  /**
   * A delivery was answered (or let go): claim the endpoint's next rounds when half of what it
   * claimed is. Not when recorded: records wait for their batch, and the endpoint must not wait
   * for them.
   */
  private claimIfLow(delivery: ClaimedDelivery): void {
    if (this.stopping) return;
    const endpointId = delivery.endpointId;
    if (this.mayHaveMore.has(endpointId) && this.held.pendingFor(endpointId) <= this.allowance / 2) {
      this.mayHaveMore.delete(endpointId);
      this.wake();
    } else if (this.claimCutShort && this.held.pending <= this.capacity / 2) {
      this.claimCutShort = false;
      this.wake();
    }
  }

  private send(delivery: ClaimedDelivery): void {
    let answered = false;
    const answer = () => {
      if (answered) return;
      answered = true;
      this.held.answered(delivery);
      this.claimIfLow(delivery);
      this.pump();
    };
    const sending: Promise<void> = this.deliver(delivery, answer)
      .catch((error) => this.deps.log.error({ err: error, delivery: delivery.id }, 'webhook delivery failed'))
      .finally(() => {
        answer();
        this.unfinished.delete(sending);
        this.held.ended(delivery);
      });
    this.unfinished.add(sending);
  }

  /**
   * One attempt: sign, send, record, and what the answer means for the endpoint. `answered` is
   * called when the receiver has answered (or the attempt ended without an answer).
   */
  private async deliver(delivery: ClaimedDelivery, answered: () => void): Promise<void> {
    const { db, clock, metrics, config, log } = this.deps;
    const at = clock.now();
    const headers = signedHeaders(secretsInForce(delivery, at), delivery.id, at, delivery.payload);
    const { result, outcome, next, ended } = await inAttemptSpan(delivery, async (traceHeaders) => {
      const result = await this.sender.send(delivery.url, { ...headers, ...traceHeaders }, delivery.payload);
      const ended = clock.now();
      const next = nextStep(delivery, result, ended);
      return { result, outcome: outcomeOf(result, next), next, ended };
    });
    answered();
    const recorded = await this.recorder.record({
      id: delivery.id,
      endpointId: delivery.endpointId,
      attempt: {
        at: at.toISOString(),
        statusCode: result.statusCode,
        error: result.error,
        latencyMs: result.latencyMs,
      },
      next,
    });
    metrics.webhookAttempts.inc({ outcome });
    metrics.webhookSeconds.observe({ outcome }, result.latencyMs / 1000);
    if (!recorded) return;
    if (result.verdict === 'delivered') {
      if (delivery.failingSince) await markHealthy(db, delivery.endpointId);
      return;
    }
    if (result.verdict === 'gone')
      return this.disable(delivery, 'gone', 'the receiver answered 410 Gone', ended);
    const failingSince = (await markFailing(db, delivery.endpointId, ended)) ?? ended;
    if (ended.getTime() - failingSince.getTime() >= config.disableAfterMs)
      await this.disable(
        delivery,
        'failing',
        `every attempt failed since ${failingSince.toISOString()}`,
        ended,
      );
    else if (next.status === 'failed')
      log.info(
        { delivery: delivery.id, endpoint: delivery.endpointId, error: result.error },
        'webhook delivery failed for good',
      );
  }

  private async disable(
    delivery: ClaimedDelivery,
    reason: 'gone' | 'failing',
    why: string,
    at: Date,
  ): Promise<void> {
    const { db, metrics, log } = this.deps;
    if (!(await disableEndpoint(db, delivery.endpointId, why, at))) return;
    const failed = await failPending(db, delivery.endpointId, `endpoint disabled: ${why}`);
    metrics.webhookEndpointsDisabled.inc({ reason });
    log.warn(
      { endpoint: delivery.endpointId, customer: delivery.customerId, reason: why, failed },
      'webhook endpoint disabled; the customer can re-enable it and replay what failed',
    );
  }
}

/** An attempt's outcome, as metrics and spans name it. */
function outcomeOf(result: AttemptResult, next: { status: DeliveryStatus }): TracedAttempt['outcome'] {
  if (result.verdict === 'delivered') return 'delivered';
  if (result.verdict === 'gone') return 'gone';
  return next.status === 'pending' ? 'retry' : 'failed';
}

/** What follows an attempt: delivered, tried again later (the schedule or Retry-After), or failed. */
export function nextStep(
  delivery: Pick<ClaimedDelivery, 'roundAttempts'>,
  result: AttemptResult,
  ended: Date,
): { status: DeliveryStatus; nextAttemptAt: Date | null } {
  if (result.verdict === 'delivered') return { status: 'delivered', nextAttemptAt: null };
  if (result.verdict !== 'retry') return { status: 'failed', nextAttemptAt: null };
  const delay = retryDelay(delivery.roundAttempts + 1, result.retryAfterMs);
  if (delay === undefined) return { status: 'failed', nextAttemptAt: null };
  return { status: 'pending', nextAttemptAt: new Date(ended.getTime() + delay) };
}
