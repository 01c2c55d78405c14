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

  constructor(spec: UrlSpec) {
    this.spec = spec;
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
    const bytes = request.image.input === 'preview' ? input.preview! : input.original;
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

  private async once(
    request: ProcessorRequest,
    bytes: Buffer,
    mediaType: string,
  ): Promise<{ answer: HostAnswer; retry: boolean }> {
    const form = new FormData();
    form.set('request', new Blob([JSON.stringify(request)], { type: 'application/json' }));
    form.set(
      'image',
      // A Buffer is a Uint8Array view; the Blob takes its one copy from it directly.
      new Blob([bytes as Uint8Array<ArrayBuffer>], { type: mediaType }),
      'image',
    );
    let response: Response;
    try {
      response = await fetch(this.spec.url, {
        method: 'POST',
        body: form,
        headers: { ...this.spec.headers, 'Imagelake-Request-Id': request.id, accept: 'application/json' },
        signal: AbortSignal.any([AbortSignal.timeout(this.spec.timeoutMs), this.closing.signal]),
      });
    } catch (error) {
      const err = error as Error & { cause?: { code?: string; message?: string } };
      if (err.name === 'TimeoutError') {
        return {
          answer: {
            ok: false,
            code: 'PROCESSOR_TIMEOUT',
            message: `did not answer within ${this.spec.timeoutMs} ms`,
          },
          retry: true,
        };
      }
      const why = err.cause?.code ?? err.cause?.message ?? err.message;
      return {
        answer: {
          ok: false,
          code: 'PROCESSOR_UNAVAILABLE',
          message: `${this.spec.url} could not be reached: ${why}`,
        },
        retry: true,
      };
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      return {
        answer: {
          ok: false,
          code: 'PROCESSOR_UNAVAILABLE',
          message: `the answer broke off: ${(error as Error).message}`,
        },
        retry: true,
      };
    }
    if (response.status === 429 || response.status >= 500) {
      return {
        answer: {
          ok: false,
          code: 'PROCESSOR_UNAVAILABLE',
          message: `answered ${response.status}: ${text.slice(0, 200)}`,
        },
        retry: true,
      };
    }
    if (response.status !== 200) {
      return {
        answer: {
          ok: false,
          code: 'PROCESSOR_FAILED',
          message: `answered ${response.status}: ${text.slice(0, 200)}`,
        },
        retry: false,
      };
    }
    return { answer: parseAnswer(text), retry: false };
  }

  async close(): Promise<void> {
    this.closing.abort();
  }
}

function parseAnswer(text: string): HostAnswer {
  if (text.length > MAX_ANSWER_BYTES) return invalid(`the answer is over ${MAX_ANSWER_BYTES} bytes`);
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
