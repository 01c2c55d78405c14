// The OpenTelemetry SDK, imported only when tracing is wanted (tracing.ts startTracing): a platform
// without OTEL_* settings never loads it.
import { FastifyOtelInstrumentation } from '@fastify/otel';
import { AwsInstrumentation } from '@opentelemetry/instrumentation-aws-sdk';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { register, supportsSyncHooks } from 'import-in-the-middle/register-hooks.mjs';

// The modules whose ES-module loading the instrumentations must see: pg (imported as ESM) and the
// AWS SDK's middleware stack. Only these are wrapped; every other import loads as usual.
const HOOKED = ['pg', 'pg-pool', '@smithy/middleware-stack', '@smithy/smithy-client', '@smithy/core'];

// The probes of readiness and metrics are polled every few seconds: a trace each would drown the
// images' traces.
const UNTRACED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export function start(): { shutdown(): Promise<void> } {
  if (supportsSyncHooks()) register({ include: HOOKED });
  // The SDK reads OTEL_* itself: exporter, endpoint, protocol, headers, sampler, resource
  // attributes, propagators. The service is "imagelake" unless OTEL_SERVICE_NAME (or service.name
  // in OTEL_RESOURCE_ATTRIBUTES) names it.
  const named =
    Boolean(process.env.OTEL_SERVICE_NAME) ||
    /(^|,)\s*service\.name=/.test(process.env.OTEL_RESOURCE_ATTRIBUTES ?? '');
  const sdk = new NodeSDK({
    serviceName: named ? undefined : 'imagelake',
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => UNTRACED_PATHS.has((request.url ?? '').split('?')[0]!),
      }),
      // A request that carries a traceparent already (a webhook attempt: its own CLIENT span,
      // webhooks/trace.ts) is not wrapped in a second span, which would add a second traceparent.
      new UndiciInstrumentation({ ignoreRequestHook: (request) => carriesTraceparent(request.headers) }),
      // Queries inside an image's spans only (not the workers' polling), without a span per pool checkout.
      new PgInstrumentation({ requireParentSpan: true, ignoreConnectSpans: true }),
      new AwsInstrumentation({ suppressInternalInstrumentation: true }),
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        // The request and handler spans; a span per hook (helmet, rate limit, ...) is noise here.
        instrumentHooks: false,
        ignorePaths: ({ url }) => UNTRACED_PATHS.has(url),
      }),
    ],
  });
  sdk.start();
  return sdk;
}

/** Whether undici's request headers (v5: one string; v6 and later: name, value, name, value...) hold a traceparent. */
function carriesTraceparent(headers: string | (string | string[])[]): boolean {
  if (typeof headers === 'string') return /(^|\r\n)traceparent:/i.test(headers);
  for (let i = 0; i < headers.length; i += 2)
    if (String(headers[i]).toLowerCase() === 'traceparent') return true;
  return false;
}
