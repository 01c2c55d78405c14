import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ERRORS } from '../errors.ts';
import type { Metrics } from '../observability/metrics.ts';

export interface DrainSettings {
  /** How long readiness answers 503 while requests are still served, so load balancers stop sending. */
  drainDelayMs: number;
  /** From the signal: how long requests in hand may take before the connections are cut. */
  graceMs: number;
}

/** Seconds a refused client should wait: another process is answering at once. */
const RETRY_AFTER_SECONDS = 1;

// Probes keep answering while the process drains: readiness says "not ready", liveness "alive".
const PROBES = new Set(['/healthz', '/readyz']);

/**
 * How an api process stops without failing a request (a rolling deploy):
 *
 * 1. `draining`: /readyz answers 503, every request is still served, and each answer carries
 *    `Connection: close`, so clients open their next connection elsewhere.
 * 2. `refusing` (after the drain delay): new requests get 503 SHUTTING_DOWN with Retry-After, in the
 *    documented error shape, while the requests in hand finish.
 * 3. Once none is left, or the grace period has run out, the server closes.
 *
 * Node's server.close() would also drop idle keep-alive connections at once, so a client reusing one
 * just then saw ECONNRESET; here they stay open until the end, and are told to close as they are used.
 */
export class Drain {
  private state: 'serving' | 'draining' | 'refusing' = 'serving';
  private inHand = 0;
  private readonly settled: Array<() => void> = [];

  get stopping(): boolean {
    return this.state !== 'serving';
  }

  /** Readiness answers 503 from now on; requests are still served. */
  announce(): void {
    if (this.state === 'serving') this.state = 'draining';
  }

  /** Hooks the app: counts requests in hand, and refuses or closes connections while draining. */
  install(app: FastifyInstance, metrics: Pick<Metrics, 'httpInHand'>): void {
    app.addHook('onRequest', async (request, reply) => {
      if (this.state === 'refusing' && !PROBES.has(request.url.split('?')[0]!)) {
        return reply
          .status(503)
          .header('retry-after', String(RETRY_AFTER_SECONDS))
          .header('connection', 'close')
          .send({ error: { code: 'SHUTTING_DOWN', message: ERRORS.SHUTTING_DOWN.message } });
      }
      this.inHand++;
      metrics.httpInHand.inc();
      // 'close' comes once per response, whether it was sent or its client went away.
      reply.raw.once('close', () => {
        this.inHand--;
        metrics.httpInHand.dec();
        if (this.inHand === 0) for (const resolve of this.settled.splice(0)) resolve();
      });
    });
    app.addHook('onSend', async (_request, reply) => {
      if (this.state !== 'serving') reply.header('connection', 'close');
    });
  }

  /** Runs the three steps above, then closes the app. */
  async stop(app: FastifyInstance, settings: DrainSettings, log: Logger): Promise<void> {
    const started = Date.now();
    this.announce();
    log.info({ drainDelayMs: settings.drainDelayMs, graceMs: settings.graceMs }, 'draining: not ready');
    await sleep(Math.min(settings.drainDelayMs, settings.graceMs));
    this.state = 'refusing';
    const left = Math.max(0, settings.graceMs - (Date.now() - started));
    if (this.inHand > 0) {
      log.info({ requests: this.inHand }, 'refusing new requests; finishing the ones in hand');
      const done = new Promise<void>((resolve) => this.settled.push(resolve));
      await Promise.race([done, sleep(left)]);
    }
    if (this.inHand > 0) {
      log.warn({ requests: this.inHand }, 'grace period over: cutting the requests still in hand');
      app.server.closeAllConnections();
    }
    await app.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
