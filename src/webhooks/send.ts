import { isIP } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
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
  /** Connections kept open per receiver (origin): the per-endpoint concurrency. */
  socketsPerHost: number;
}

/**
 * Posts signed bodies to receivers over keep-alive connections, with undici (one pool of
 * connections per origin): it spends about half the CPU of node:http on a request, and a
 * dispatcher's requests are most of its work. Redirects are never followed (undici's request does
 * not), answers are read up to MAX_ANSWER_BYTES, and every connection goes to an address the guard
 * accepted (its `lookup`, as the socket connects).
 */
export class Sender {
  private readonly policy: SendPolicy;
  private readonly agent: Agent;
  private readonly targets = new Map<string, Target | { refused: string }>();

  constructor(policy: SendPolicy) {
    this.policy = policy;
    this.agent = new Agent({
      connections: policy.socketsPerHost,
      // The attempt's own timer bounds it as a whole (below); these only must not end it sooner.
      headersTimeout: policy.timeoutMs,
      bodyTimeout: policy.timeoutMs,
      connect: {
        timeout: policy.timeoutMs,
        ...(policy.allowPrivate ? {} : { lookup: guardedLookup as never }),
      },
    });
  }

  async send(url: string, headers: Record<string, string>, body: string): Promise<AttemptResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const target = this.targetOf(url);
    if ('refused' in target)
      return { verdict: 'final', statusCode: null, error: target.refused, latencyMs: 0 };
    // One timer for the whole attempt (connect, send, answer). A plain timer and controller rather
    // than AbortSignal.timeout, whose weak references cost as much as the request itself.
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.policy.timeoutMs);
    try {
      const response = await this.agent.request({
        origin: target.origin,
        path: target.path,
        method: 'POST',
        headers: {
          ...headers,
          ...target.headers,
          'content-type': 'application/json',
          'user-agent': 'imagelake-webhooks/1',
        },
        body,
        signal: abort.signal,
      });
      const statusCode = response.statusCode;
      const retryAfter = response.headers['retry-after'];
      const retryAfterMs =
        typeof retryAfter === 'string' ? parseRetryAfter(retryAfter, new Date()) : undefined;
      await readBounded(response.body);
      return {
        verdict: verdictOf(statusCode),
        statusCode,
        error: statusCode >= 200 && statusCode < 300 ? null : `HTTP ${statusCode}`,
        latencyMs: elapsed(),
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      };
    } catch (caught) {
      const error = (refusal(caught) ?? caught) as NodeJS.ErrnoException;
      const refused = error instanceof RefusedAddressError;
      return {
        verdict: refused ? 'final' : 'retry',
        statusCode: null,
        error: refused
          ? `refused: ${error.message}`
          : timedOut
            ? `no answer within ${this.policy.timeoutMs} ms`
            : `${error.code ?? error.name}: ${error.message}`.slice(0, 300),
        latencyMs: elapsed(),
      };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Where a URL sends, parsed once per URL (a dispatcher sends to few, thousands of times each), or
   * why it may not: an IP literal never goes through the agent's lookup, so it is checked here.
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
    void this.agent.destroy();
  }
}

/** Parsed URLs kept at most: past the cap the cache starts again. */
const MAX_TARGETS = 10_000;

interface Target {
  origin: string;
  path: string;
  /** Credentials in the URL (https://user:secret@host/) go as Basic auth. */
  headers: { authorization?: string };
}

function parseTarget(url: string, allowPrivate: boolean): Target | { refused: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { refused: 'the URL is not valid' };
  }
  // Names are checked by the agent's lookup as it connects; an IP literal never goes through it.
  const host = hostOf(parsed);
  if (!allowPrivate && isIP(host)) {
    const why = refusedAddress(host);
    if (why) return { refused: `refused: ${why}` };
  }
  const credentials = parsed.username
    ? `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`
    : undefined;
  return {
    origin: parsed.origin,
    path: `${parsed.pathname}${parsed.search}`,
    headers: credentials ? { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` } : {},
  };
}

/**
 * Reads an answer's body up to MAX_ANSWER_BYTES: a receiver that answers at length is cut off, and
 * its connection is not reused.
 */
async function readBounded(body: Dispatcher.ResponseData['body']): Promise<void> {
  let read = 0;
  try {
    for await (const chunk of body) {
      read += (chunk as Buffer).length;
      if (read > MAX_ANSWER_BYTES) {
        body.destroy();
        return;
      }
    }
  } catch {
    // The status has come: what the body does after it changes nothing.
  }
}

/** The guard's refusal, when undici wrapped it in a connection error of its own. */
function refusal(error: unknown): RefusedAddressError | undefined {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof RefusedAddressError) return e;
  return undefined;
}

function verdictOf(status: number): AttemptResult['verdict'] {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 410) return 'gone';
  if (status === 429 || status >= 500) return 'retry';
  return 'final';
}
