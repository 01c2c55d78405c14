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
  // CPU of this thread for this image (libvips' own threads are not counted): for usage billing.
  const cpu = globalThis.process.threadCpuUsage();
  const steps: StepTime[] = [];
  try {
    const result = await runPipeline(task, undefined, steps);
    const used = globalThis.process.threadCpuUsage(cpu);
    return { ok: true, result: { ...result, cpuMs: (used.user + used.system) / 1000 }, steps };
  } catch (error) {
    const failed = steps.at(-1);
    if (failed?.failed) failed.end = performance.timeOrigin + performance.now();
    if (error instanceof AppError) return { ok: false, code: error.code, message: error.message, steps };
    return { ok: false, code: 'INTERNAL', message: (error as Error)?.stack ?? String(error), steps };
  }
}
