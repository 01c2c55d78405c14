// Entry point of a processing worker thread (run by the pool in pool.ts).
import { AppError, type ErrorCode } from '../errors.ts';
import type { ProcessResult, ProcessTask } from './context.ts';
import { runPipeline } from './pipeline.ts';

export type WorkerAnswer =
  | { ok: true; result: ProcessResult }
  | { ok: false; code: ErrorCode; message: string };

// Errors cross the thread boundary as plain data, so the code survives structured cloning.
export default async function process(task: ProcessTask): Promise<WorkerAnswer> {
  try {
    // Its CPU is measured by the pool (cpu-shares.ts): libvips works on threads of its own.
    return { ok: true, result: await runPipeline(task) };
  } catch (error) {
    if (error instanceof AppError) return { ok: false, code: error.code, message: error.message };
    return { ok: false, code: 'INTERNAL', message: (error as Error)?.stack ?? String(error) };
  }
}
