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

  send(url: string, headers: Record<string, string>, body: string): Promise<AttemptResult> {
    const target = this.targetOf(url);
    if ('refused' in target)
      return Promise.resolve({ verdict: 'final', statusCode: null, error: target.refused, latencyMs: 0 });
    return new Promise((resolve) => {
      const attempt = new Attempt(this.policy.timeoutMs, resolve);
      this.agent.dispatch(
        {
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
        },
        attempt,
      );
    });
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
 * One attempt, as undici's dispatch handler: the answer's status and headers, its body counted and
 * dropped (cut off past MAX_ANSWER_BYTES, and its connection with it), one timer for the whole
 * attempt (waiting for a connection, connecting, sending, the answer). The handler rather than
 * undici's `request`, which wraps each answer in a stream, an abort signal and promises: at
 * thousands of attempts a second they were a third of the dispatcher's work. Settles once; what
 * undici reports after that (the error of a connection cut off on purpose) changes nothing.
 */
class Attempt implements Dispatcher.DispatchHandler {
  private readonly started = performance.now();
  private readonly timer: NodeJS.Timeout;
  private readonly timeoutMs: number;
  private readonly settle: (result: AttemptResult) => void;
  private controller: Dispatcher.DispatchController | undefined;
  private settled = false;
  private timedOut = false;
  private statusCode = 0;
  private retryAfter: string | undefined;
  private read = 0;

  constructor(timeoutMs: number, settle: (result: AttemptResult) => void) {
    this.timeoutMs = timeoutMs;
    this.settle = settle;
    this.timer = setTimeout(() => this.timeout(), timeoutMs);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Timed out while it waited for a connection: it ended then, it goes no further.
    if (this.timedOut) controller.abort(new Error('timed out'));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    this.statusCode = statusCode;
    const retryAfter = headers['retry-after'];
    if (typeof retryAfter === 'string') this.retryAfter = retryAfter;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.read += chunk.length;
    if (this.read <= MAX_ANSWER_BYTES) return;
    // The status has come: the rest of a long answer is not waited for, nor is its connection reused.
    this.answered();
    controller.abort(new Error('answer too long'));
  }

  onResponseEnd(): void {
    this.answered();
  }

  onResponseError(_controller: Dispatcher.DispatchController, caught: Error): void {
    if (this.settled) return;
    // The status has come: what the body does after it changes nothing.
    if (this.statusCode) {
      this.answered();
      return;
    }
    const error = (refusal(caught) ?? caught) as NodeJS.ErrnoException;
    const refused = error instanceof RefusedAddressError;
    this.end({
      verdict: refused ? 'final' : 'retry',
      statusCode: null,
      error: refused
        ? `refused: ${error.message}`
        : `${error.code ?? error.name}: ${error.message}`.slice(0, 300),
    });
  }

  private answered(): void {
    const statusCode = this.statusCode;
    const retryAfterMs =
      this.retryAfter !== undefined ? parseRetryAfter(this.retryAfter, new Date()) : undefined;
    this.end({
      verdict: verdictOf(statusCode),
      statusCode,
      error: statusCode >= 200 && statusCode < 300 ? null : `HTTP ${statusCode}`,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }

  private timeout(): void {
    if (this.settled) return;
    this.timedOut = true;
    // A status came but the body did not end: the status stands, and the connection is cut.
    if (this.statusCode) this.answered();
    else this.end({ verdict: 'retry', statusCode: null, error: `no answer within ${this.timeoutMs} ms` });
    this.controller?.abort(new Error('timed out'));
  }

  private end(result: Omit<AttemptResult, 'latencyMs'>): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.settle({ ...result, latencyMs: Math.round(performance.now() - this.started) });
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
