import { contextOfHeaders, inSpan, SpanKind } from '../../observability/tracing.ts';

/**
 * A consumed message's span: a child of the producer's span when the message carries a
 * `traceparent` header (W3C trace context, as OpenTelemetry's Kafka instrumentations send it), so
 * an image's trace starts where its producer's did; a trace of its own otherwise. Landing, and
 * every retry of it, happens inside.
 */
export function inMessageSpan<T>(
  message: { topic: string; partition: number; offset: bigint },
  headers: ReadonlyMap<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  return inSpan(
    `imagelake.kafka receive ${message.topic}`,
    {
      parent: contextOfHeaders(headers),
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': 'kafka',
        'messaging.destination.name': message.topic,
        'messaging.destination.partition.id': String(message.partition),
        'messaging.kafka.offset': Number(message.offset),
      },
    },
    fn,
  );
}
