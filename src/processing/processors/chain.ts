import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { EXTENSION, type ImageFormat, MEDIA_TYPE, sniff } from '../../ingest/sniff.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { failSpan, inSpan, traceparentOf } from '../../observability/tracing.ts';
import type { ImageMetadata } from '../context.ts';
import { CommandHost } from './command-host.ts';
import type { DerivedImage, HostAnswer, HostErrorCode, ProcessorRequest } from './contract.ts';
import { checkLabels, checkMetadata, type Fields, formatFields, parseFields } from './fields.ts';
import type { HostInput, ProcessorHost } from './host.ts';
import { HttpHost } from './http-host.ts';
import { ModuleHost } from './module-host.ts';
import { ProcessorConfigError, type ProcessorSpec, runOrder } from './spec.ts';

const IMAGE_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
const MAX_IMAGES = 10;
const MAX_IMAGE_BYTES = 32 * 2 ** 20;

export interface ActiveProcessor {
  spec: ProcessorSpec;
  host: ProcessorHost;
  name: string;
  version: string;
  fields: Fields;
}

export type StepErrorCode = HostErrorCode | 'PROCESSOR_SKIPPED';

export interface StepError {
  code: StepErrorCode;
  message: string;
  /** The processor's own code, when it answered with one. */
  processorCode?: string;
  /** The processor said the cause may pass. */
  retryable?: boolean;
}

/**
 * Whether an image is tried again after this error. A processor's own error (an exception, a
 * ProcessorError) is not, unless it says retryable: the same bytes fail the same way, and each retry
 * waits out the backoff. A timeout, a crash, its memory limit or an unreachable service may pass.
 */
export function isRetryable(error: StepError): boolean {
  if (error.code === 'PROCESSOR_FAILED') return error.retryable === true;
  return error.code !== 'PROCESSOR_OUTPUT_INVALID' && error.code !== 'PROCESSOR_SKIPPED';
}

/** What the company's processors made of one image. */
export interface ChainOutcome {
  /** name -> metadata fields, for every processor that succeeded. */
  outputs: Record<string, Record<string, unknown>>;
  labels: Record<string, string[]>;
  /** name -> version, for every processor that ran, successfully or not. */
  versions: Record<string, string>;
  /** name -> why it failed or was skipped. */
  errors: Record<string, StepError>;
  images: Array<DerivedImage & { processor: string; format: ImageFormat }>;
  /** Set when a required processor failed: the image fails with this. */
  failure?: { processor: string } & StepError;
  timings: Record<string, number>;
}

export interface ImageInfo {
  id: string;
  customerId: string;
  source: string;
  format: string;
  metadata: ImageMetadata;
}

function openHost(spec: ProcessorSpec, log: Logger): ProcessorHost {
  if (spec.kind === 'module') return new ModuleHost(spec);
  if (spec.kind === 'command') return new CommandHost(spec, log);
  return new HttpHost(spec);
}

/**
 * The company's processors, started and checked, run on each image in their order. Each kind is a
 * host (module-host, command-host, http-host); what they answer is checked here, the same way for
 * all three, against what the processor declared.
 */
export class Processors {
  readonly list: ActiveProcessor[];
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;

  private constructor(list: ActiveProcessor[], log: Logger, metrics: Metrics | undefined) {
    this.list = list;
    this.log = log;
    this.metrics = metrics;
  }

  static none(log: Logger): Processors {
    return new Processors([], log, undefined);
  }

  /** Starts every processor and checks what each declares; every problem is reported at once. */
  static async open(
    specs: ProcessorSpec[],
    options: { log: Logger; metrics?: Metrics; source: string },
  ): Promise<Processors> {
    const hosts = specs.map((spec) => openHost(spec, options.log));
    const problems: string[] = [];
    const active: Array<ActiveProcessor | undefined> = [];
    await Promise.all(
      hosts.map(async (host, index) => {
        const spec = host.spec;
        const what =
          spec.kind === 'module' ? spec.module : spec.kind === 'command' ? spec.command.join(' ') : spec.url;
        try {
          const declared = await host.start();
          if (spec.name && declared.name !== spec.name) {
            throw new Error(
              `${what} calls itself "${declared.name}", but the processors file names it "${spec.name}"`,
            );
          }
          if (spec.version && declared.version !== spec.version) {
            throw new Error(
              `"${declared.name}" is version ${declared.version}, but the processors file pins ${spec.version}`,
            );
          }
          if (spec.fields && declared.fields !== undefined) {
            // Both say: they must agree, or every image would fail PROCESSOR_OUTPUT_INVALID.
            const sorted = (f: Fields) => JSON.stringify(Object.entries(formatFields(f)).sort());
            const own = formatFields(parseFields(declared.fields, `"${declared.name}"`));
            const file = formatFields(spec.fields);
            if (sorted(parseFields(declared.fields, `"${declared.name}"`)) !== sorted(spec.fields))
              throw new Error(
                `"${declared.name}" declares fields ${JSON.stringify(own)}, but the processors file says ${JSON.stringify(file)}: make them agree, or drop "fields" from the file`,
              );
          }
          const raw = spec.fields ? undefined : declared.fields;
          if (!spec.fields && raw === undefined) {
            throw new Error(
              `"${declared.name}" declares no fields: add "fields" to the processor, or to its entry in the processors file`,
            );
          }
          const fields = spec.fields ?? parseFields(raw, `"${declared.name}"`);
          active[index] = {
            spec: { ...spec, name: declared.name },
            host,
            name: declared.name,
            version: declared.version,
            fields,
          };
        } catch (error) {
          problems.push((error as Error).message.replace(/^Processor /, ''));
        }
      }),
    );
    const names = active.flatMap((a) => (a ? [a.name] : []));
    for (const n of new Set(names))
      if (names.indexOf(n) !== names.lastIndexOf(n)) problems.push(`two processors are named "${n}"`);
    if (problems.length) {
      await Promise.all(hosts.map((h) => h.close().catch(() => {})));
      throw new ProcessorConfigError(options.source, problems);
    }
    // Started concurrently; run in the declared order, dependencies first.
    const ordered = runOrder((active as ActiveProcessor[]).map((a) => ({ ...a, after: a.spec.after })));
    return new Processors(ordered, options.log, options.metrics);
  }

  get needsDecoded(): boolean {
    return this.list.some((p) => p.spec.kind === 'module');
  }

  get needsPreview(): boolean {
    return this.list.some((p) => p.spec.kind !== 'module' && p.spec.input === 'preview');
  }

  get(name: string): ActiveProcessor | undefined {
    return this.list.find((p) => p.name === name);
  }

  /** What the image and the facts record: name -> version and name -> declared fields. */
  describe() {
    return this.list.map((p) => ({
      name: p.name,
      version: p.version,
      kind: p.spec.kind,
      required: p.spec.required,
      after: p.spec.after,
      fields: formatFields(p.fields),
    }));
  }

  /**
   * Runs every processor (or only `only`) on one image, in order. `previous` seeds the outputs of
   * processors that ran earlier, for a reprocess of one processor that reads another's.
   */
  async run(
    image: ImageInfo,
    input: HostInput,
    options: { only?: string; previous?: Record<string, Record<string, unknown>> } = {},
  ): Promise<ChainOutcome> {
    const outcome: ChainOutcome = {
      outputs: {},
      labels: {},
      versions: {},
      errors: {},
      images: [],
      timings: {},
    };
    const previous: Record<string, Record<string, unknown>> = { ...options.previous };
    for (const p of this.list) {
      if (options.only && p.name !== options.only) continue;
      const blocked = p.spec.after.find((d) => !(d in previous));
      let error: StepError | undefined;
      if (blocked) {
        error = {
          code: 'PROCESSOR_SKIPPED',
          message: `runs after "${blocked}", which did not succeed on this image`,
        };
      } else {
        const started = performance.now();
        // Its own span; the request carries it (traceparent), so a processor that traces continues it.
        const checked = await inSpan(
          `imagelake.processor ${p.name}`,
          { attributes: { 'imagelake.processor': p.name, 'imagelake.processor.version': p.version } },
          async (span) => {
            const answer = await p.host.run(this.request(p, image, previous), input);
            const checked = answer.ok ? this.check(p, answer) : answer;
            if (!checked.ok) failSpan(span, checked.code, checked.message);
            return checked;
          },
        );
        const seconds = (performance.now() - started) / 1000;
        outcome.timings[p.name] = Math.round(seconds * 10_000) / 10;
        outcome.versions[p.name] = p.version;
        this.metrics?.processorRuns.inc({ processor: p.name, outcome: checked.ok ? 'ok' : checked.code });
        this.metrics?.processorSeconds.observe({ processor: p.name }, seconds);
        if (checked.ok) {
          outcome.outputs[p.name] = checked.metadata;
          previous[p.name] = checked.metadata;
          if (checked.labels.length) outcome.labels[p.name] = checked.labels;
          outcome.images.push(...checked.images.map((i) => ({ ...i, processor: p.name })));
          continue;
        }
        error = {
          code: checked.code,
          message: checked.message,
          ...(checked.processorCode ? { processorCode: checked.processorCode } : {}),
          ...(checked.retryable ? { retryable: true } : {}),
        };
      }
      outcome.errors[p.name] = error;
      this.log.debug({ processor: p.name, image: image.id, ...error }, 'processor step failed');
      if (p.spec.required) {
        outcome.failure = { processor: p.name, ...error };
        break;
      }
    }
    return outcome;
  }

  private request(
    p: ActiveProcessor,
    image: ImageInfo,
    previous: Record<string, Record<string, unknown>>,
  ): ProcessorRequest {
    return {
      id: randomUUID(),
      image: {
        id: image.id,
        customerId: image.customerId,
        source: image.source,
        format: image.format,
        mediaType: image.metadata.mediaType,
        width: image.metadata.width,
        height: image.metadata.height,
        input: p.spec.kind === 'module' ? 'original' : p.spec.input,
      },
      metadata: image.metadata,
      previous: { ...previous },
      config: p.spec.config,
      ...traceOf(),
    };
  }

  /** The one check of every kind's answer against the declaration. */
  private check(
    p: ActiveProcessor,
    answer: Extract<HostAnswer, { ok: true }>,
  ):
    | {
        ok: true;
        metadata: Record<string, unknown>;
        labels: string[];
        images: Array<DerivedImage & { format: ImageFormat }>;
      }
    | { ok: false; code: HostErrorCode; message: string; processorCode?: string; retryable?: boolean } {
    const problems = [...checkMetadata(p.fields, answer.metadata ?? {}), ...checkLabels(answer.labels)];
    const images: Array<DerivedImage & { format: ImageFormat }> = [];
    const given = answer.images ?? [];
    if (given.length > MAX_IMAGES) problems.push(`at most ${MAX_IMAGES} derived images, got ${given.length}`);
    const seen = new Set<string>();
    for (const i of given.slice(0, MAX_IMAGES)) {
      const format = (i.format === 'jpg' ? 'jpeg' : i.format) as ImageFormat;
      const actual = sniff(i.data.subarray(0, 64));
      if (!IMAGE_NAME.test(i.name))
        problems.push(`derived image name "${i.name}" must be a lowercase identifier`);
      else if (seen.has(i.name)) problems.push(`two derived images are named "${i.name}"`);
      else if (!(format in EXTENSION))
        problems.push(
          `derived image "${i.name}" has format "${i.format}"; use ${Object.keys(MEDIA_TYPE).join(', ')}`,
        );
      else if (i.data.length > MAX_IMAGE_BYTES)
        problems.push(`derived image "${i.name}" is over ${MAX_IMAGE_BYTES} bytes`);
      else if (actual !== format)
        problems.push(
          `derived image "${i.name}" is declared ${format} but its bytes are ${actual ?? 'not an image'}`,
        );
      else images.push({ name: i.name, format, data: i.data });
      seen.add(i.name);
    }
    if (problems.length)
      return { ok: false, code: 'PROCESSOR_OUTPUT_INVALID', message: problems.slice(0, 10).join('; ') };
    return {
      ok: true,
      metadata: (answer.metadata ?? {}) as Record<string, unknown>,
      labels: [...new Set((answer.labels as string[] | undefined) ?? [])],
      images,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.list.map((p) => p.host.close().catch(() => {})));
  }
}

/** The processor span's context for the request, when traced: HTTP sends it as a header, commands in the frame. */
function traceOf(): { traceparent?: string } {
  const traceparent = traceparentOf();
  return traceparent ? { traceparent } : {};
}
