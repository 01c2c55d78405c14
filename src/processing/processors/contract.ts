import type { Sharp } from 'sharp';
import type { Decoded, ImageMetadata } from '../context.ts';

/**
 * What the company's own processing code implements. A module's default export (or its named
 * exports) provide name, version and process(); see examples/processors/ for a working one.
 *
 *   export default { name: 'brightness', version: '1.0.0', async process(image, context) { return { mean: 0.4 } } }
 */
export interface ProcessorImage {
  /** The original bytes as uploaded. */
  bytes: Buffer;
  /** The decoded pixels shared by every step: upright, sRGB, 8-bit, long edge at most 1280. */
  decoded: Decoded;
  /** A sharp pipeline over `decoded`, for processors that want to resize, crop or analyse further. */
  sharp(): Sharp;
  metadata: ImageMetadata;
}

export interface ProcessorContext {
  imageId: string;
  customerId: string;
  source: string;
  /** Outputs of the processors that ran before this one, by name. */
  previous: Record<string, Record<string, unknown>>;
}

export interface Processor {
  name: string;
  version: string;
  /** Returns JSON-serialisable metadata stored under metadata.processors[name]. */
  process(
    image: ProcessorImage,
    context: ProcessorContext,
  ): Promise<Record<string, unknown>> | Record<string, unknown>;
}

const NAME = /^[a-z][a-z0-9_-]{0,62}$/;

/** Checks a loaded module's shape; returns the processor or a list of what is wrong with it. */
export function validateProcessor(mod: unknown, path: string): Processor {
  const candidate = ((mod as { default?: unknown })?.default ?? mod) as Partial<Processor>;
  const problems: string[] = [];
  if (typeof candidate?.name !== 'string' || !NAME.test(candidate.name)) {
    problems.push('name must be a lowercase identifier (a-z, 0-9, _ and -)');
  }
  if (typeof candidate?.version !== 'string' || !candidate.version)
    problems.push('version must be a non-empty string');
  if (typeof candidate?.process !== 'function') problems.push('process must be a function');
  if (problems.length) throw new Error(`Processor ${path}: ${problems.join('; ')}`);
  return candidate as Processor;
}

const loaded = new Map<string, Promise<Processor>>();

/** Imports a processor module once per thread. */
export function loadProcessor(path: string): Promise<Processor> {
  let promise = loaded.get(path);
  if (!promise) {
    promise = import(path).then((mod) => validateProcessor(mod, path));
    loaded.set(path, promise);
  }
  return promise;
}
