import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { runPipeline } from '../../../src/processing/pipeline.ts';
import { Processors } from '../../../src/processing/processors/chain.ts';
import type { HostInput } from '../../../src/processing/processors/host.ts';
import { parseSpecs } from '../../../src/processing/processors/spec.ts';
import { jpeg } from '../../fixtures/images.ts';

export const fixture = (name: string) =>
  fileURLToPath(new URL(`../../fixtures/processors/${name}`, import.meta.url));
export const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });

/** Starts processors declared the way a processors file declares them. */
export function open(entries: Array<Record<string, unknown>>): Promise<Processors> {
  const specs = parseSpecs(entries, process.cwd(), { timeoutMs: 10_000, concurrency: 1 }, 'test');
  return Processors.open(specs, { log, source: 'test' });
}

/** A real image through the built-in steps, as the runner hands it to the processors. */
export async function image(
  width = 100,
  height = 80,
): Promise<{ info: Parameters<Processors['run']>[0]; input: HostInput & { original: Buffer } }> {
  const bytes = await jpeg({ width, height });
  const result = await runPipeline({
    imageId: '00000000-0000-4000-8000-000000000001',
    customerId: '00000000-0000-4000-8000-000000000002',
    source: 'http',
    format: 'jpeg',
    checksum: createHash('sha256').update(bytes).digest('hex'),
    input: bytes,
    limits: { maxPixels: 50_000_000, maxFrames: 100 },
    keepDecoded: true,
  });
  const preview = result.renditions.find((r) => r.name === 'preview')!.data;
  return {
    info: { id: `img-${width}`, customerId: 'c', source: 'http', format: 'jpeg', metadata: result.metadata },
    input: {
      original: bytes,
      preview: Buffer.from(preview),
      decoded: result.decoded,
      metadata: result.metadata,
    },
  };
}

export const node = process.execPath;
