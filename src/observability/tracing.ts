import {
  type Attributes,
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';

/**
 * Tracing, through the OpenTelemetry API only. The SDK (tracing-sdk.ts) is loaded by
 * `startTracing` when the standard OTEL_* variables ask for it; until then every call here goes
 * to the API's no-op tracer: no span is recorded, `traceparentOf` answers null, nothing is sent.
 *
 * One trace follows one image: the upload request or Kafka message, its landing, the job (a child
 * of the landing's context, which is stored with the job), the pipeline's steps, each processor,
 * the outcome, the outcome event and each attempt of its webhook deliveries.
 */

export type { Context, Span };
export { SpanKind };

export const tracer = trace.getTracer('imagelake');

/** Whether the environment turns tracing on: an OTLP endpoint or a traces exporter other than "none". */
export function tracingWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED === 'true') return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim();
  if (exporter) return exporter !== 'none';
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

let started: { shutdown(): Promise<void> } | undefined;

/**
 * Starts the SDK when the environment asks for it. Call it before the rest of the program is
 * imported (bin/imagelake.js does), so the pg, http and AWS SDK instrumentations see those modules
 * load. Without OTEL_* settings nothing is imported.
 */
export async function startTracing(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (started || !tracingWanted(env)) return Boolean(started);
  const sdk = await import('./tracing-sdk.ts');
  started = sdk.start();
  return true;
}

/** Sends the spans still buffered and stops the SDK (at shutdown, so the last image's trace is kept). */
export async function stopTracing(): Promise<void> {
  const sdk = started;
  started = undefined;
  await sdk?.shutdown().catch(() => {});
}

/** Whether spans are being recorded (the SDK is running). */
export function tracingOn(): boolean {
  return started !== undefined;
}

/** Span attributes of an image: who, from where, what. */
export function imageAttributes(image: {
  id: string;
  customerId: string;
  source?: string;
  format?: string | null;
  bytes?: number;
}): Attributes {
  const attributes: Attributes = {
    'imagelake.image.id': image.id,
    'imagelake.customer.id': image.customerId,
  };
  if (image.source) attributes['imagelake.image.source'] = image.source;
  if (image.format) attributes['imagelake.image.format'] = image.format;
  if (image.bytes !== undefined) attributes['imagelake.image.bytes'] = image.bytes;
  return attributes;
}

/** Marks a span failed with the platform's error code (errors.ts), as `error.type` and our own key. */
export function failSpan(span: Span, code: string, message?: string): void {
  span.setAttribute('imagelake.error.code', code);
  erroredSpan(span, code, message ? `${code}: ${message}` : code);
}

/**
 * Marks a span failed with an `error.type` that is not one of the platform's codes (what another
 * service answered, e.g. an HTTP status), and the message saying what happened.
 */
export function erroredSpan(span: Span, type: string, message: string): void {
  span.setAttribute('error.type', type);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/**
 * Runs fn in a new active span, ended when fn settles. A thrown error is recorded with its code
 * (an AppError's, or INTERNAL) and thrown on.
 */
export async function inSpan<T>(
  name: string,
  options: { attributes?: Attributes; kind?: SpanKind; links?: Link[]; startTime?: number; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer.startActiveSpan(
    name,
    {
      attributes: options.attributes,
      kind: options.kind,
      links: options.links,
      startTime: options.startTime,
    },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        failSpan(span, typeof code === 'string' ? code : 'INTERNAL', (error as Error)?.message);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** An error as a span records it: the platform's code (errors.ts) and its message. */
export interface SpanError {
  code: string;
  message?: string;
}

/** The active context (a span's children are made under it). */
export function activeContext(): Context {
  return context.active();
}

/** Runs fn with `ctx` active: work done for a span from outside it (a group's, for each of its landings). */
export function inContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** The active span (a no-op span when nothing is traced). */
export function activeSpan(): Span {
  return trace.getActiveSpan() ?? trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
}

/** A finished span from times measured elsewhere (a worker thread's steps, a claim of many jobs). */
export function recordSpan(
  name: string,
  parent: Context,
  times: { start: number; end: number },
  attributes: Attributes = {},
  error?: SpanError,
): void {
  const span = tracer.startSpan(name, { startTime: times.start, attributes }, parent);
  if (error) failSpan(span, error.code, error.message);
  span.end(times.end);
}

/**
 * Spans for a batch sent at once (the outbox's events): each starts under the context its
 * traceparent names, and `headers(i)` gives the headers that carry span i on to the consumer.
 */
export function batchSpans(
  name: string,
  traceparents: Array<string | null>,
  attributes: (i: number) => Attributes,
): { headers(i: number): Record<string, string>; end(error?: SpanError): void } {
  const spans = traceparents.map((tp, i) =>
    tp
      ? tracer.startSpan(name, { kind: SpanKind.PRODUCER, attributes: attributes(i) }, contextOf(tp))
      : undefined,
  );
  return {
    headers: (i) => {
      const span = spans[i];
      return span ? traceHeaders(trace.setSpan(ROOT_CONTEXT, span)) : {};
    },
    end: (error) => {
      for (const span of spans) {
        if (!span) continue;
        if (error) failSpan(span, error.code, error.message);
        span.end();
      }
    },
  };
}

/** The W3C traceparent of the active span (or of `ctx`), or null when nothing is traced. */
export function traceparentOf(ctx: Context = context.active()): string | null {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent ?? null;
}

/** The trace id of the active span, or null when nothing is traced. */
export function activeTraceId(): string | null {
  const span = trace.getActiveSpan();
  const spanContext = span?.spanContext();
  return spanContext && trace.isSpanContextValid(spanContext) ? spanContext.traceId : null;
}

/** The context a stored or received traceparent names (the root context when there is none). */
export function contextOf(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, { traceparent });
}

/** The context received headers carry (traceparent, tracestate), or the root context. */
export function contextOfHeaders(headers: ReadonlyMap<string, string>): Context {
  if (!headers.has('traceparent')) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, Object.fromEntries(headers));
}

/** A link to the span a traceparent names, or none. */
export function linkTo(traceparent: string | null | undefined, attributes?: Attributes): Link[] {
  const spanContext = trace.getSpanContext(contextOf(traceparent));
  return spanContext && trace.isSpanContextValid(spanContext) ? [{ context: spanContext, attributes }] : [];
}

/** Headers carrying the active context (traceparent, tracestate), for a request to another service. */
export function traceHeaders(ctx: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** pino's mixin: trace_id and span_id of the active span on every log line, when there is one. */
export function logTraceFields(): Record<string, string> {
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (!spanContext || !trace.isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}

/** Epoch milliseconds, comparable across threads (each has its own performance.timeOrigin). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}
