import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { answeredError, type HostAnswer, type ProcessorRequest } from './contract.ts';
import type { Declared, HostInput, ProcessorHost } from './host.ts';
import type { ProcessorSpec } from './spec.ts';

type UrlSpec = Extract<ProcessorSpec, { kind: 'url' }>;

const BACKOFF_MS = 250;
/** Answers read from a service are bounded; derived images travel base64 inside the JSON. */
const MAX_ANSWER_BYTES = 64 * 2 ** 20;

/**
 * A processor behind HTTP (Cloud Run, a Kubernetes service): one POST per image with a time limit,
 * retries with backoff on what a retry can fix (429, 5xx, timeouts, refused connections), and at
 * most `concurrency` requests in flight from this process.
 */
export class HttpHost implements ProcessorHost {
  readonly spec: UrlSpec;
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];
  private readonly closing = new AbortController();
  private readonly url: URL;
  /** Connections are kept alive between images; at most `concurrency` are open at once. */
  private readonly agent: HttpAgent;

  constructor(spec: UrlSpec) {
    this.spec = spec;
    this.url = new URL(spec.url);
    const options = { keepAlive: true, maxSockets: spec.concurrency };
    this.agent = this.url.protocol === 'https:' ? new HttpsAgent(options) : new HttpAgent(options);
  }

  /** A service is not asked at boot (it may start after us); the config declares it. */
  async start(): Promise<Declared> {
    return { name: this.spec.name, version: this.spec.version! };
  }

  get active(): number {
    return this.inFlight;
  }

  async run(request: ProcessorRequest, input: HostInput): Promise<HostAnswer> {
    await this.slot();
    try {
      return await this.attempts(request, input);
    } finally {
      this.inFlight--;
      this.waiters.shift()?.();
    }
  }

  private async slot(): Promise<void> {
    if (this.inFlight < this.spec.concurrency) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.inFlight++;
  }

  private async attempts(request: ProcessorRequest, input: HostInput): Promise<HostAnswer> {
    const bytes = request.image.input === 'preview' ? input.preview! : input.original!;
    const mediaType =
      request.image.input === 'preview'
        ? 'image/webp'
        : (request.image.mediaType ?? 'application/octet-stream');
    let last: HostAnswer = { ok: false, code: 'PROCESSOR_UNAVAILABLE', message: 'not tried' };
    for (let attempt = 0; attempt <= this.spec.retries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, BACKOFF_MS * 2 ** (attempt - 1)));
      if (this.closing.signal.aborted) break;
      const { answer, retry } = await this.once(request, bytes, mediaType);
      last = answer;
      if (!retry) return answer;
    }
    const tries = this.spec.retries + 1;
    return last.ok
      ? last
      : { ...last, message: `${last.message} (after ${tries} ${tries === 1 ? 'try' : 'tries'})` };
  }

  /**
   * One POST. The multipart body is written as its parts (preamble, the image as it is, epilogue)
   * on a kept-alive connection: `fetch` with `FormData` copied the image into a Blob and through
   * web streams, several times the CPU for a large original.
   */
  private async once(
    request: ProcessorRequest,
    bytes: Buffer,
    mediaType: string,
  ): Promise<{ answer: HostAnswer; retry: boolean }> {
    const boundary = `imagelake-${randomBytes(12).toString('hex')}`;
    const head = Buffer.from(
      `--${boundary}\r\ncontent-disposition: form-data; name="request"; filename="request.json"\r\n` +
        `content-type: application/json\r\n\r\n${JSON.stringify(request)}\r\n` +
        `--${boundary}\r\ncontent-disposition: form-data; name="image"; filename="image"\r\n` +
        `content-type: ${mediaType}\r\n\r\n`,
    );
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const timeout = AbortSignal.timeout(this.spec.timeoutMs);
    const post = (this.url.protocol === 'https:' ? httpsRequest : httpRequest)(this.url, {
      method: 'POST',
      agent: this.agent,
      signal: AbortSignal.any([timeout, this.closing.signal]),
      headers: {
        ...this.spec.headers,
        ...(request.traceparent ? { traceparent: request.traceparent } : {}),
        'imagelake-request-id': request.id,
        accept: 'application/json',
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': head.length + bytes.length + tail.length,
      },
    });
    let status: number;
    let body: Buffer | undefined;
    // Errors are read where they surface (the response wait, the body read); this keeps one that
    // comes after those (an abort while the body streams) from being an unhandled 'error' event.
    post.on('error', () => {});
    try {
      const answered = once(post, 'response') as Promise<[IncomingMessage]>;
      post.write(head);
      post.write(bytes);
      post.end(tail);
      const [response] = await answered;
      status = response.statusCode ?? 0;
      body = await readCapped(response, MAX_ANSWER_BYTES);
    } catch (error) {
      post.destroy();
      const err = error as NodeJS.ErrnoException;
      if (timeout.aborted) {
        return {
          answer: {
            ok: false,
            code: 'PROCESSOR_TIMEOUT',
            message: `did not answer within ${this.spec.timeoutMs} ms`,
          },
          retry: true,
        };
      }
      return {
        answer: {
          ok: false,
          code: 'PROCESSOR_UNAVAILABLE',
          message: `${this.spec.url} could not be reached or broke off: ${err.code ?? err.message}`,
        },
        retry: true,
      };
    }
    if (!body) {
      return {
        answer: {
          ok: false,
          code: 'PROCESSOR_OUTPUT_INVALID',
          message: `the answer is over ${MAX_ANSWER_BYTES} bytes`,
        },
        retry: false,
      };
    }
    const text = body.toString('utf8');
    if (status === 429 || status >= 500) {
      return {
        answer: {
          ok: false,
          code: 'PROCESSOR_UNAVAILABLE',
          message: `answered ${status}: ${text.slice(0, 200)}`,
        },
        retry: true,
      };
    }
    if (status !== 200) {
      return {
        answer: { ok: false, code: 'PROCESSOR_FAILED', message: `answered ${status}: ${text.slice(0, 200)}` },
        retry: false,
      };
    }
    return { answer: parseAnswer(text), retry: false };
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.agent.destroy();
  }
}

/** The whole body, or undefined once it passes `max` bytes (the rest is not read). */
async function readCapped(response: IncomingMessage, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      response.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

function parseAnswer(text: string): HostAnswer {
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text);
  } catch {
    return invalid(`the answer is not JSON: ${text.slice(0, 100)}`);
  }
  if (body?.ok === false) return answeredError(body.error);
  if (body?.ok !== true) return invalid('the answer has no "ok": true or false');
  const images = body.images ?? [];
  if (!Array.isArray(images)) return invalid('"images" must be a list');
  const decoded = [];
  for (const i of images) {
    if (typeof i?.name !== 'string' || typeof i?.format !== 'string' || typeof i?.data !== 'string') {
      return invalid('each of "images" must be {name, format, data (base64)}');
    }
    decoded.push({ name: i.name, format: i.format, data: Buffer.from(i.data, 'base64') });
  }
  return { ok: true, metadata: body.metadata, labels: body.labels, images: decoded };
}

function invalid(message: string): HostAnswer {
  return { ok: false, code: 'PROCESSOR_OUTPUT_INVALID', message };
}
