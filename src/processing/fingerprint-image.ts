import { createHash } from 'node:crypto';
import type { ProcessTask } from './context.ts';
import { runPipeline } from './pipeline.ts';
import { decode } from './steps/decode.ts';
import { fingerprints } from './steps/fingerprints.ts';
import { limits } from './steps/limits.ts';
import { probe } from './steps/probe.ts';

/** The steps that read an image's fingerprints, no more: no renditions, no metadata, nothing stored. */
const FINGERPRINT_STEPS = [probe, limits, decode, fingerprints] as const;

/**
 * The SHA-256 and perceptual hash of image bytes, computed exactly as processing computes them (same
 * decode, same limits), so a search by image compares like with like. Refuses what processing
 * refuses, with the same codes (CORRUPT_IMAGE, TOO_MANY_PIXELS, TOO_MANY_FRAMES).
 */
export async function fingerprintImage(
  input: Buffer,
  taskLimits: ProcessTask['limits'],
): Promise<{ sha256: string; phash: string; flat: boolean }> {
  const sha256 = createHash('sha256').update(input).digest('hex');
  const result = await runPipeline(
    {
      imageId: 'search',
      customerId: 'search',
      source: 'search',
      format: 'unknown',
      checksum: sha256,
      input,
      limits: taskLimits,
    },
    FINGERPRINT_STEPS,
  );
  return result.fingerprints;
}
