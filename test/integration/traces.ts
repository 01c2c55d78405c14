import { readFile } from 'node:fs/promises';
import { until } from './harness.ts';

/** One span as the collector's file exporter wrote it (OTLP JSON), with its service's name. */
export interface WrittenSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  status: { code?: number; message?: string };
  links: Array<{ traceId: string; spanId: string }>;
}

type AnyValue = {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
};

function attributeValue(v: AnyValue): string | number | boolean {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return v.boolValue ?? '';
}

function attributesOf(list: Array<{ key: string; value: AnyValue }> = []) {
  return Object.fromEntries(list.map((a) => [a.key, attributeValue(a.value)]));
}

/** Every span of one trace the collector has written so far (one OTLP export request a line). */
export async function spansOf(file: string, traceId: string): Promise<WrittenSpan[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const spans: WrittenSpan[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes(traceId)) continue;
    for (const rs of JSON.parse(line).resourceSpans ?? []) {
      const service = String(attributesOf(rs.resource?.attributes)['service.name'] ?? '');
      for (const ss of rs.scopeSpans ?? [])
        for (const s of ss.spans ?? [])
          if (s.traceId === traceId)
            spans.push({
              service,
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? '',
              name: s.name,
              kind: Number(s.kind ?? 0),
              attributes: attributesOf(s.attributes),
              status: s.status ?? {},
              links: (s.links ?? []).map((l: { traceId: string; spanId: string }) => ({
                traceId: l.traceId,
                spanId: l.spanId,
              })),
            });
    }
  }
  return spans;
}

/** Waits until the trace holds a span of each name (spans reach the collector in batches). */
export async function traceWith(file: string, traceId: string, names: string[]): Promise<WrittenSpan[]> {
  let last: WrittenSpan[] = [];
  try {
    return await until(
      `spans ${names.join(', ')} in trace ${traceId}`,
      async () => {
        last = await spansOf(file, traceId);
        const have = new Set(last.map((s) => s.name));
        return names.every((n) => have.has(n)) && last;
      },
      20_000,
    );
  } catch (error) {
    throw new Error(
      `${(error as Error).message}; it has: ${[...new Set(last.map((s) => s.name))].join(', ')}`,
    );
  }
}

/** The one span of a name (fails on none or several). */
export function one(spans: WrittenSpan[], name: string): WrittenSpan {
  const found = spans.filter((s) => s.name === name);
  if (found.length !== 1) throw new Error(`${found.length} spans named ${name}`);
  return found[0]!;
}

/** Roots of a trace: spans whose parent is not in it. One connected trace has exactly one. */
export function roots(spans: WrittenSpan[]): WrittenSpan[] {
  const ids = new Set(spans.map((s) => s.spanId));
  return spans.filter((s) => !ids.has(s.parentSpanId));
}
