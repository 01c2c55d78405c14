import type { Sharp } from 'sharp';
import type { Decoded, ImageMetadata } from '../context.ts';

/**
 * What the company's own processing code implements, whatever its kind (docs/processors.md).
 * A module's default export (or its named exports) provide name, version, fields and process():
 *
 *   export default {
 *     name: 'brightness', version: '1.0.0', fields: { mean: 'number' },
 *     async process(image, context) { return { mean: 0.4 } },
 *   }
 */
export interface ProcessorImage {
  /** The original bytes as uploaded. */
  bytes: Buffer;
  /** The decoded pixels: upright, sRGB, 8-bit, long edge at most 1280. */
  decoded: Decoded;
  /** A sharp pipeline over `decoded`, for processors that want to resize, crop or analyse further. */
  sharp(): Sharp;
  metadata: ImageMetadata;
}

export interface ProcessorContext {
  imageId: string;
  customerId: string;
  source: string;
  /** Metadata of the processors that ran before this one, by name. */
  previous: Record<string, Record<string, unknown>>;
  /** The processor's `config` from the processors file. */
  config: Record<string, unknown>;
}

export interface DerivedImage {
  /** Stored as PROCESSOR.NAME.FORMAT next to the renditions. */
  name: string;
  format: string;
  data: Uint8Array;
}

/** Everything a processor can return besides plain metadata; build it with result(). */
export interface ProcessorOutput {
  metadata: Record<string, unknown>;
  labels?: string[];
  images?: DerivedImage[];
}

export interface ModuleProcessor {
  name: string;
  version: string;
  /** Declared fields, e.g. { mean: 'number', tags: 'string[]', note: 'string?' }. */
  fields?: Record<string, string>;
  /** Returns metadata fields, or result({ metadata, labels, images }). */
  process(
    image: ProcessorImage,
    context: ProcessorContext,
  ): Promise<Record<string, unknown> | ProcessorOutput> | Record<string, unknown> | ProcessorOutput;
}

/** Marks a full output, so a field that happens to be called `metadata` is never mistaken for one. */
export const FULL_OUTPUT = '__imagelake_output__';

export function result(output: ProcessorOutput): ProcessorOutput {
  return { ...output, [FULL_OUTPUT]: true } as ProcessorOutput;
}

/** What every host answers for one image, before the platform checks it against the declaration. */
export type HostAnswer =
  | { ok: true; metadata: unknown; labels?: unknown; images?: DerivedImage[] }
  | {
      ok: false;
      /** The platform's code: PROCESSOR_FAILED, PROCESSOR_TIMEOUT, PROCESSOR_CRASHED ... */
      code: HostErrorCode;
      message: string;
      /** The processor's own code, when it answered with an error. */
      processorCode?: string;
      /** The processor said the cause may pass (a service it calls is down): try the image again. */
      retryable?: boolean;
    };

export type HostErrorCode =
  | 'PROCESSOR_FAILED'
  | 'PROCESSOR_TIMEOUT'
  | 'PROCESSOR_CRASHED'
  | 'PROCESSOR_MEMORY'
  | 'PROCESSOR_OUTPUT_INVALID'
  | 'PROCESSOR_UNAVAILABLE';

/** The request every kind receives (the JSON header of the stdio and HTTP protocols). */
export interface ProcessorRequest {
  id: string;
  image: {
    id: string;
    customerId: string;
    source: string;
    format: string;
    mediaType: string | undefined;
    width: number;
    height: number;
    input: 'original' | 'preview';
  };
  metadata: ImageMetadata;
  previous: Record<string, Record<string, unknown>>;
  config: Record<string, unknown>;
  /** The W3C traceparent of the processor's span, when the platform traces: continue it to join the image's trace. */
  traceparent?: string;
}

/** A code a processor may give its errors: it is kept as a dimension of the statistics. */
export const PROCESSOR_CODE = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/;

/**
 * A processor's error (`{"ok": false, "error": {code, message, retryable}}` in either protocol, or
 * what a module threw): its own code when it is a short identifier, and whether to try again
 * (only when it says so: the same image usually fails the same way).
 */
export function answeredError(error: unknown): HostAnswer {
  const e = (error ?? {}) as { code?: unknown; message?: unknown; retryable?: unknown };
  const message = typeof e.message === 'string' ? e.message : 'failed without a message';
  const code = typeof e.code === 'string' && PROCESSOR_CODE.test(e.code) ? e.code : undefined;
  return {
    ok: false,
    code: 'PROCESSOR_FAILED',
    // A code that cannot be a dimension stays readable in the message.
    message: typeof e.code === 'string' && !code ? `${e.code.slice(0, 100)}: ${message}` : message,
    ...(code ? { processorCode: code } : {}),
    ...(e.retryable === true ? { retryable: true } : {}),
  };
}

export const PROCESSOR_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

/** Checks a loaded module's shape; throws with everything that is wrong with it. */
export function validateModule(mod: unknown, path: string): ModuleProcessor {
  const candidate = ((mod as { default?: unknown })?.default ?? mod) as Partial<ModuleProcessor>;
  const problems: string[] = [];
  if (typeof candidate?.name !== 'string' || !PROCESSOR_NAME.test(candidate.name)) {
    problems.push('name must be a lowercase identifier (a-z, 0-9, _ and -)');
  }
  if (typeof candidate?.version !== 'string' || !candidate.version)
    problems.push('version must be a non-empty string');
  if (typeof candidate?.process !== 'function') problems.push('process must be a function');
  if (problems.length) throw new Error(`Processor ${path}: ${problems.join('; ')}`);
  return candidate as ModuleProcessor;
}
