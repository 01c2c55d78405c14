// Entry point of a module processor's worker thread (run by ModuleHost in module-host.ts).
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import type { Decoded, ImageMetadata } from '../context.ts';
import { fromDecoded } from '../steps/renditions.ts';
import {
  answeredError,
  FULL_OUTPUT,
  type HostAnswer,
  type ModuleProcessor,
  validateModule,
} from './contract.ts';

export interface ModuleTask {
  module: string;
  bytes: Uint8Array;
  decoded: Decoded;
  metadata: ImageMetadata;
  context: {
    imageId: string;
    customerId: string;
    source: string;
    previous: Record<string, Record<string, unknown>>;
    config: Record<string, unknown>;
  };
}

sharp.cache(false);
let loaded: Promise<ModuleProcessor> | undefined;

/** Describes the module without running it: what the host checks at boot. */
export async function describe(task: { module: string }) {
  const p = await load(task.module);
  return { name: p.name, version: p.version, fields: p.fields };
}

function load(module: string): Promise<ModuleProcessor> {
  loaded ??= import(pathToFileURL(module).href).then((mod) => validateModule(mod, module));
  return loaded;
}

export default async function run(task: ModuleTask): Promise<HostAnswer> {
  const processor = await load(task.module);
  const bytes = Buffer.from(task.bytes.buffer, task.bytes.byteOffset, task.bytes.byteLength);
  const d = task.decoded;
  const decoded = { ...d, data: Buffer.from(d.data.buffer, d.data.byteOffset, d.data.byteLength) };
  let output: unknown;
  try {
    output = await processor.process(
      {
        bytes,
        decoded,
        sharp: () => fromDecoded(decoded),
        metadata: task.metadata,
      },
      task.context,
    );
  } catch (error) {
    const e = error as { code?: unknown; message?: unknown; retryable?: unknown } | undefined;
    return answeredError({
      code: e?.code,
      message: typeof e?.message === 'string' ? e.message : String(error),
      retryable: e?.retryable,
    });
  }
  const full = output && typeof output === 'object' && FULL_OUTPUT in output;
  const parts = full
    ? (output as { metadata?: unknown; labels?: unknown; images?: unknown })
    : { metadata: output };
  try {
    // JSON now, so what is stored is exactly what the catalog returns, and nothing uncloneable
    // (a function, a BigInt, a cycle) reaches the thread boundary.
    const metadata = parts.metadata === undefined ? undefined : JSON.parse(JSON.stringify(parts.metadata));
    const labels = parts.labels === undefined ? undefined : JSON.parse(JSON.stringify(parts.labels));
    return { ok: true, metadata, labels, images: parts.images as never };
  } catch (error) {
    return {
      ok: false,
      code: 'PROCESSOR_OUTPUT_INVALID',
      message: `the output is not JSON: ${(error as Error).message}`,
    };
  }
}
