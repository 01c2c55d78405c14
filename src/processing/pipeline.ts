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
// One libvips thread per operation, whatever the allocator: the pipeline's threads already keep the
// cores busy with an image each. sharp picks 1 itself under glibc's malloc, but 2 or more once
// MALLOC_ARENA_MAX is set (README: Production), which cost 7-19% of throughput in bench/pipeline.ts.
sharp.concurrency(1);

/** When a step ran, in epoch milliseconds: the main thread records it as a span (threads have no tracer). */
export interface StepTime {
  name: string;
  start: number;
  end: number;
  failed?: boolean;
}

export async function runPipeline(
  task: ProcessTask,
  steps: readonly Step[] = STEPS,
  times: StepTime[] = [],
): Promise<ProcessResult> {
  const input = Buffer.from(task.input.buffer, task.input.byteOffset, task.input.byteLength);
  const ctx: StepContext = {
    task,
    input,
    result: { renditions: [], timings: {} },
  };
  for (const step of steps) {
    const started = performance.now();
    const time: StepTime = { name: step.name, start: performance.timeOrigin + started, end: 0, failed: true };
    times.push(time);
    await step.run(ctx);
    const ended = performance.now();
    time.end = performance.timeOrigin + ended;
    time.failed = undefined;
    ctx.result.timings![step.name] = Math.round((ended - started) * 10) / 10;
  }
  // Module processors read the decoded pixels; they cross the thread boundary only when asked for.
  if (task.keepDecoded) ctx.result.decoded = ctx.decoded;
  return ctx.result as ProcessResult;
}
