// Entry point of a processing worker thread (run by the pool in pool.ts).
import { AppError, type ErrorCode } from '../errors.ts';
import type { ProcessResult, ProcessTask } from './context.ts';
import { runPipeline } from './pipeline.ts';

export type WorkerAnswer =
  | { ok: true; result: ProcessResult }
  | { ok: false; code: ErrorCode; message: string };

// Errors cross the thread boundary as plain data, so the code survives structured cloning.
export default async function process(task: ProcessTask): Promise<WorkerAnswer> {
  // CPU of this thread for this image (libvips' own threads are not counted): for usage billing.
  const cpu = globalThis.process.threadCpuUsage();
  try {
    const result = await runPipeline(task);
    const used = globalThis.process.threadCpuUsage(cpu);
    return { ok: true, result: { ...result, cpuMs: (used.user + used.system) / 1000 } };
  } catch (error) {
    if (error instanceof AppError) return { ok: false, code: error.code, message: error.message };
    return { ok: false, code: 'INTERNAL', message: (error as Error)?.stack ?? String(error) };
  }
}
