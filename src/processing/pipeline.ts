import sharp from 'sharp';
import type { ProcessResult, ProcessTask, Step, StepContext } from './context.ts';
import { decode } from './steps/decode.ts';
import { fingerprints } from './steps/fingerprints.ts';
import { limits } from './steps/limits.ts';
import { metadata } from './steps/metadata.ts';
import { probe } from './steps/probe.ts';
import { renditions } from './steps/renditions.ts';

/**
 * The built-in steps, in order. Each is one file in steps/; they share one StepContext. The company's
 * processors run after these, each in its own host (processors/chain.ts).
 */
export const STEPS: readonly Step[] = [probe, limits, decode, metadata, renditions, fingerprints];

// Threads already give parallelism across images; libvips' own cache only holds memory here.
sharp.cache(false);

export async function runPipeline(task: ProcessTask, steps: readonly Step[] = STEPS): Promise<ProcessResult> {
  const input = Buffer.from(task.input.buffer, task.input.byteOffset, task.input.byteLength);
  const ctx: StepContext = {
    task,
    input,
    result: { renditions: [], timings: {} },
  };
  for (const step of steps) {
    const started = performance.now();
    await step.run(ctx);
    ctx.result.timings![step.name] = Math.round((performance.now() - started) * 10) / 10;
  }
  // Module processors read the decoded pixels; they cross the thread boundary only when asked for.
  if (task.keepDecoded) ctx.result.decoded = ctx.decoded;
  return ctx.result as ProcessResult;
}
