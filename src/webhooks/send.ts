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
  private readonly targets = new Map<string, Target | { refused: string }>();

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
    const target = this.targetOf(url);
    if ('refused' in target)
      return { verdict: 'final', statusCode: null, error: target.refused, latencyMs: 0 };
    const client = target.secure ? https : http;
    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      const settle = (result: AttemptResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const request = client.request(
        {
          ...target.options,
          method: 'POST',
          agent: target.secure ? this.agents.https : this.agents.http,
          headers: {
            ...headers,
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
            'user-agent': 'imagelake-webhooks/1',
          },
        },
        (response) => {
          const statusCode = response.statusCode ?? 0;
          const retryAfter = response.headers['retry-after'];
          const retryAfterMs = retryAfter === undefined ? undefined : parseRetryAfter(retryAfter, new Date());
          let read = 0;
          response.on('data', (chunk: Buffer) => {
            read += chunk.length;
            // A receiver that answers at length is cut off: its connection is not reused.
            if (read > MAX_ANSWER_BYTES) response.destroy();
          });
          const done = () =>
            settle({
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
      // One timer for the whole attempt (connect, send, answer). A plain timer rather than
      // AbortSignal.timeout, whose weak references cost more than the rest of a request's own work.
      const timer = setTimeout(() => request.destroy(new AttemptTimeout()), this.policy.timeoutMs);
      request.on('error', (error: NodeJS.ErrnoException) => {
        const refused = error instanceof RefusedAddressError;
        settle({
          verdict: refused ? 'final' : 'retry',
          statusCode: null,
          error: refused
            ? `refused: ${error.message}`
            : error instanceof AttemptTimeout
              ? `no answer within ${this.policy.timeoutMs} ms`
              : `${error.code ?? error.name}: ${error.message}`.slice(0, 300),
          latencyMs: elapsed(),
        });
      });
      request.end(body);
    });
  }

  /**
   * Where a URL sends, parsed once per URL (a dispatcher sends to few, thousands of times each), or
   * why it may not: an IP literal never goes through the agents' lookup, so it is checked here.
   */
  private targetOf(url: string): Target | { refused: string } {
    let target = this.targets.get(url);
    if (!target) {
      if (this.targets.size >= MAX_TARGETS) this.targets.clear();
      target = parseTarget(url, this.policy.allowPrivate);
      this.targets.set(url, target);
    }
    return target;
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

/** Parsed URLs kept at most: past the cap the cache starts again. */
const MAX_TARGETS = 10_000;

interface Target {
  secure: boolean;
  options: { protocol: string; hostname: string; port?: string; path: string; auth?: string };
}

function parseTarget(url: string, allowPrivate: boolean): Target | { refused: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { refused: 'the URL is not valid' };
  }
  // Names are checked by the agents' lookup as they connect; an IP literal never goes through it.
  const host = hostOf(parsed);
  if (!allowPrivate && isIP(host)) {
    const why = refusedAddress(host);
    if (why) return { refused: `refused: ${why}` };
  }
  return {
    secure: parsed.protocol === 'https:',
    options: {
      protocol: parsed.protocol,
      hostname: host,
      path: `${parsed.pathname}${parsed.search}`,
      ...(parsed.port ? { port: parsed.port } : {}),
      // Credentials in the URL (https://user:secret@host/) go as Basic auth, as node:http sends them.
      ...(parsed.username
        ? { auth: `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}` }
        : {}),
    },
  };
}

/** An attempt that outlived its timeout. */
class AttemptTimeout extends Error {
  override readonly name = 'TimeoutError';
}

function verdictOf(status: number): AttemptResult['verdict'] {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 410) return 'gone';
  if (status === 429 || status >= 500) return 'retry';
  return 'final';
}
