// Entry point of a processing worker thread (run by the pool in pool.ts).
import { AppError, type ErrorCode } from '../errors.ts';
import type { ProcessResult, ProcessTask } from './context.ts';
import { runPipeline, type StepTime } from './pipeline.ts';

/** steps: when each step ran (the failed one last), for the image's trace. */
export type WorkerAnswer =
  | { ok: true; result: ProcessResult; steps?: StepTime[] }
  | { ok: false; code: ErrorCode; message: string; steps?: StepTime[] };

// Errors cross the thread boundary as plain data, so the code survives structured cloning.
export default async function process(task: ProcessTask): Promise<WorkerAnswer> {
  const steps: StepTime[] = [];
  try {
    // Its CPU is measured by the pool (cpu-shares.ts): libvips works on threads of its own.
    return { ok: true, result: await runPipeline(task, undefined, steps), steps };
  } catch (error) {
    const failed = steps.at(-1);
    if (failed?.failed) failed.end = performance.timeOrigin + performance.now();
    if (error instanceof AppError) return { ok: false, code: error.code, message: error.message, steps };
    return { ok: false, code: 'INTERNAL', message: (error as Error)?.stack ?? String(error), steps };
  }
}
