import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { guardedLookup, hostOf, RefusedAddressError, refusedAddress } from './address-guard.ts';
import { parseRetryAfter } from './schedule.ts';

/** What a receiver may answer before it is cut off: its body is read only for the delivery log. */
export const MAX_ANSWER_BYTES = 4096;

/** How one attempt ended, and what it means for the delivery. */
export interface AttemptResult {
  /** delivered: 2xx. retry: timeout, connection error, 429, 5xx. gone: 410. final: anything else. */
  verdict: 'delivered' | 'retry' | 'gone' | 'final';
  statusCode: number | null;
  error: string | null;
  latencyMs: number;
  retryAfterMs?: number;
}

export interface SendPolicy {
  timeoutMs: number;
  /** Loopback and private addresses allowed (local receivers in development and tests). */
  allowPrivate: boolean;
  /** Connections kept open per receiver host: the per-endpoint concurrency. */
  socketsPerHost: number;
}

/**
 * Posts signed bodies to receivers over keep-alive connections (node:http's agents: one pool per
 * host). Redirects are never followed (node:http does not), answers are read up to
 * MAX_ANSWER_BYTES, and every connection goes to an address the guard accepted.
 */
export class Sender {
  private readonly policy: SendPolicy;
  private readonly agents: { http: http.Agent; https: https.Agent };

  constructor(policy: SendPolicy) {
    this.policy = policy;
    const options = {
      keepAlive: true,
      maxSockets: policy.socketsPerHost,
      // Receivers close idle connections on their own schedule; ours is shorter than most (Node's 5 s).
      keepAliveMsecs: 1000,
      ...(policy.allowPrivate ? {} : { lookup: guardedLookup as never }),
    };
    this.agents = { http: new http.Agent(options), https: new https.Agent(options) };
  }

  async send(url: string, headers: Record<string, string>, body: string): Promise<AttemptResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      return { verdict: 'final', statusCode: null, error: 'the URL is not valid', latencyMs: 0 };
    }
    // Names are checked by the agents' lookup as they connect; an IP literal never goes through it.
    const host = hostOf(target);
    if (!this.policy.allowPrivate && isIP(host)) {
      const why = refusedAddress(host);
      if (why) return { verdict: 'final', statusCode: null, error: `refused: ${why}`, latencyMs: 0 };
    }
    const secure = target.protocol === 'https:';
    const client = secure ? https : http;
    return new Promise<AttemptResult>((resolve) => {
      const request = client.request(
        target,
        {
          method: 'POST',
          agent: secure ? this.agents.https : this.agents.http,
          headers: {
            ...headers,
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
            'user-agent': 'imagelake-webhooks/1',
          },
          signal: AbortSignal.timeout(this.policy.timeoutMs),
        },
        (response) => {
          const statusCode = response.statusCode ?? 0;
          const retryAfterMs = parseRetryAfter(
            response.headers['retry-after'] as string | undefined,
            new Date(),
          );
          let read = 0;
          response.on('data', (chunk: Buffer) => {
            read += chunk.length;
            // A receiver that answers at length is cut off: its connection is not reused.
            if (read > MAX_ANSWER_BYTES) response.destroy();
          });
          const done = () =>
            resolve({
              verdict: verdictOf(statusCode),
              statusCode,
              error: statusCode >= 200 && statusCode < 300 ? null : `HTTP ${statusCode}`,
              latencyMs: elapsed(),
              ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
            });
          response.on('end', done);
          response.on('close', done);
          response.on('error', () => {});
        },
      );
      request.on('error', (error: NodeJS.ErrnoException) => {
        const refused = error instanceof RefusedAddressError;
        const timedOut = error.name === 'TimeoutError' || error.name === 'AbortError';
        resolve({
          verdict: refused ? 'final' : 'retry',
          statusCode: null,
          error: refused
            ? `refused: ${error.message}`
            : timedOut
              ? `no answer within ${this.policy.timeoutMs} ms`
              : `${error.code ?? error.name}: ${error.message}`.slice(0, 300),
          latencyMs: elapsed(),
        });
      });
      request.end(body);
    });
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

function verdictOf(status: number): AttemptResult['verdict'] {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 410) return 'gone';
  if (status === 429 || status >= 500) return 'retry';
  return 'final';
}
