import type { Updateable } from 'kysely';
import type { ImageRow, ImagesTable, Rendition } from '../catalog/schema.ts';
import { type ImageKeyParts, metadataKey } from '../lake/object-keys.ts';
import { type Lake, LakeNotFound } from '../lake/port.ts';
import type { ImageMetadata, ProcessResult } from './context.ts';
import type { ChainOutcome } from './processors/chain.ts';

/**
 * The image record, in one place: the catalog row's outcome columns and metadata, and the lake's
 * sidecar beside the outputs. The catalog keeps the built-in metadata with the processors' results
 * beside it (metadata.processors, .labels, .processorErrors); the sidecar holds the same under
 * `processors`, so readers of the lake alone get the metadata too.
 */

type Timing = { processedAt: Date; queueMs: number; processingMs: number };
type Steps = Pick<ChainOutcome, 'outputs' | 'labels' | 'versions' | 'errors'>;

/** The parts of an image's lake keys. */
export function keyParts(image: Pick<ImageRow, 'id' | 'customer_id' | 'received_at'>): ImageKeyParts {
  return { imageId: image.id, customerId: image.customer_id, receivedAt: image.received_at };
}

/** The labels the processors gave, each once, from the per-processor map. */
export function flatLabels(labels: Record<string, string[]> | undefined): string[] {
  return [...new Set(Object.values(labels ?? {}).flat())];
}

/** The labels of an image of the catalog. */
export function labelsOf(image: Pick<ImageRow, 'metadata'>): string[] {
  return flatLabels((image.metadata?.labels ?? {}) as Record<string, string[]>);
}

/** The outputs of the company's processors recorded on the image, by processor. */
export function outputsOf(metadata: Record<string, unknown> | null): Record<string, Record<string, unknown>> {
  return (metadata?.processors ?? {}) as Record<string, Record<string, unknown>>;
}

/** The built-in steps' metadata of an image of the catalog, without the processors' results. */
export function builtInMetadata(image: Pick<ImageRow, 'metadata'>): ImageMetadata {
  const { processors, labels, processorErrors, ...builtIn } = (image.metadata ?? {}) as Record<
    string,
    unknown
  >;
  return builtIn as unknown as ImageMetadata;
}

/** The catalog columns of a processed image. */
export function processedRecord(
  result: ProcessResult,
  steps: Steps,
  renditions: Rendition[],
  timing: Timing,
): Updateable<ImagesTable> {
  const { width, height } = result.metadata;
  return {
    status: 'processed',
    processed_at: timing.processedAt,
    width,
    height,
    metadata: JSON.stringify({
      ...result.metadata,
      processors: steps.outputs,
      labels: steps.labels,
      processorErrors: steps.errors,
    }),
    renditions: JSON.stringify(renditions),
    phash: result.fingerprints.phash,
    processors: JSON.stringify(steps.versions),
    error_code: null,
    error_message: null,
    queue_ms: timing.queueMs,
    processing_ms: timing.processingMs,
  };
}

/** The catalog columns of a failed image. */
export function failedRecord(
  error: { code: string; message: string },
  timing: Timing,
): Updateable<ImagesTable> {
  return {
    status: 'failed',
    processed_at: timing.processedAt,
    error_code: error.code,
    error_message: error.message.slice(0, 2000),
    queue_ms: timing.queueMs,
    processing_ms: timing.processingMs,
  };
}

export interface Reprocessed {
  metadata: Record<string, unknown>;
  processors: Record<string, string>;
  renditions: Rendition[];
}

/**
 * The image after one processor ran again: its metadata, labels, errors and derived images for that
 * processor replaced, the others kept. The fact row follows, so the statistics group by the new output.
 */
export function reprocessedImage(
  image: ImageRow,
  name: string,
  steps: ChainOutcome,
  derived: Rendition[],
): Reprocessed {
  const metadata = { ...(image.metadata ?? {}) } as Record<string, unknown>;
  const replace = (key: string, value: unknown) => {
    const map = { ...((metadata[key] ?? {}) as Record<string, unknown>) };
    if (value === undefined) delete map[name];
    else map[name] = value;
    metadata[key] = map;
  };
  replace('processors', steps.outputs[name]);
  replace('labels', steps.labels[name]);
  replace('processorErrors', steps.errors[name]);
  const renditions = (image.renditions ?? []).filter((r) => !r.name.startsWith(`${name}.`)).concat(derived);
  return { metadata, processors: { ...(image.processors ?? {}), [name]: steps.versions[name]! }, renditions };
}

/** The image's metadata with a processor's error noted beside its earlier output, which stays. */
export function withProcessorError(image: ImageRow, name: string, error: unknown): Record<string, unknown> {
  const metadata = { ...(image.metadata ?? {}) } as Record<string, unknown>;
  metadata.processorErrors = { ...((metadata.processorErrors ?? {}) as object), [name]: error };
  return metadata;
}

/** The earlier outputs of the other processors, as a reprocess hands them to the one it runs. */
export function previousOutputs(image: ImageRow, name: string): Record<string, Record<string, unknown>> {
  const previous = { ...outputsOf(image.metadata) };
  delete previous[name];
  return previous;
}

/** The renditions an image had that a reprocess replaced: to delete from the lake. */
export function staleRenditions(image: ImageRow, next: Reprocessed): string[] {
  const kept = new Set(next.renditions.map((r) => r.key));
  return (image.renditions ?? []).filter((r) => !kept.has(r.key)).map((r) => r.key);
}

/** The sidecar of a processed image. */
export function sidecarOf(
  parts: ImageKeyParts,
  result: ProcessResult,
  steps: Steps,
  renditions: Rendition[],
) {
  return {
    id: parts.imageId,
    customerId: parts.customerId,
    receivedAt: parts.receivedAt.toISOString(),
    metadata: result.metadata,
    fingerprints: result.fingerprints,
    processors: {
      versions: steps.versions,
      outputs: steps.outputs,
      labels: steps.labels,
      errors: steps.errors,
    },
    renditions: renditions.map(({ key, ...rest }) => ({ ...rest, key })),
  };
}

// The sidecar makes the lake self-describing: readers of the lake alone get the metadata too.
export async function writeSidecar(lake: Lake, parts: ImageKeyParts, sidecar: object): Promise<void> {
  await lake.put(metadataKey(parts), Buffer.from(JSON.stringify(sidecar, null, 2)), {
    contentType: 'application/json',
    durable: false,
  });
}

/** Keeps the lake's sidecar in step with the catalog after a reprocess; a missing sidecar stays missing. */
export async function patchSidecar(lake: Lake, parts: ImageKeyParts, next: Reprocessed): Promise<void> {
  try {
    const sidecar = JSON.parse((await lake.getBuffer(metadataKey(parts))).toString('utf8'));
    sidecar.processors = {
      versions: next.processors,
      outputs: next.metadata.processors,
      labels: next.metadata.labels,
      errors: next.metadata.processorErrors,
    };
    sidecar.renditions = next.renditions;
    await writeSidecar(lake, parts, sidecar);
  } catch (error) {
    if (!(error instanceof LakeNotFound)) throw error;
  }
}
