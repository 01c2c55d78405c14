import type { ClaimedDelivery } from '../catalog/webhook-deliveries.ts';
import { contextOf, erroredSpan, inSpan, SpanKind, traceHeaders } from '../observability/tracing.ts';
import type { AttemptResult } from './send.ts';

/** What an attempt came to: the answer, and what it means for the delivery. */
export interface TracedAttempt {
  result: AttemptResult;
  outcome: 'delivered' | 'gone' | 'retry' | 'failed';
}

/**
 * Runs one attempt of a delivery in its span, `imagelake.webhook deliver` (CLIENT), a child of the
 * span that wrote the delivery (the landing, the outcome: its stored traceparent), so the image's
 * trace shows each attempt, like the Kafka publish of its event. `send` gets the headers that carry
 * the span to the receiver (W3C traceparent); Standard Webhooks signs only the id, the timestamp and
 * the body, so they do not touch the signature. A delivery written outside any trace (a test event,
 * tracing off) is sent without a span or headers: nothing is recorded, nothing is spent.
 */
export function inAttemptSpan<T extends TracedAttempt>(
  delivery: ClaimedDelivery,
  send: (headers: Record<string, string>) => Promise<T>,
): Promise<T> {
  if (!delivery.traceparent) return send({});
  return inSpan(
    'imagelake.webhook deliver',
    {
      parent: contextOf(delivery.traceparent),
      kind: SpanKind.CLIENT,
      attributes: {
        ...(delivery.imageId ? { 'imagelake.image.id': delivery.imageId } : {}),
        'imagelake.customer.id': delivery.customerId,
        'imagelake.event.type': delivery.eventType,
        'imagelake.webhook.endpoint.id': delivery.endpointId,
        'imagelake.webhook.delivery.id': delivery.id,
        'imagelake.webhook.attempt': delivery.attempts + 1,
      },
    },
    async (span) => {
      const attempt = await send(traceHeaders());
      const { result, outcome } = attempt;
      span.setAttribute('imagelake.webhook.outcome', outcome);
      if (result.statusCode !== null) span.setAttribute('http.response.status_code', result.statusCode);
      // Every attempt but a delivered one failed, whether it is tried again or not. The type is the
      // receiver's status when it answered, as HTTP clients' spans say it.
      if (outcome !== 'delivered')
        erroredSpan(
          span,
          result.statusCode !== null ? String(result.statusCode) : 'no_answer',
          result.error ?? `HTTP ${result.statusCode}`,
        );
      return attempt;
    },
  );
}
