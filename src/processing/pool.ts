import { Piscina } from 'piscina';
import type { ProcessTask } from './context.ts';
import type { WorkerAnswer } from './worker.ts';

/**
 * Worker threads that run the pipeline. A task that passes its time limit is aborted, which
 * terminates its thread (the only way to stop a runaway decode) and starts a fresh one.
 */
export class ProcessingPool {
  private readonly piscina: Piscina;
  private readonly timeoutMs: number;

  constructor(options: { threads: number; timeoutMs: number }) {
    this.timeoutMs = options.timeoutMs;
    this.piscina = new Piscina({
      filename: new URL('./worker.ts', import.meta.url).href,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: 60_000,
    });
  }

  /**
   * transferInput hands the original's memory to the thread instead of copying it. Only for buffers
   * the caller owns outright (read from the lake): memory allocated by native code, like sharp's
   * output buffers, cannot be transferred.
   */
  async run(task: ProcessTask, options: { transferInput?: boolean } = {}): Promise<WorkerAnswer> {
    try {
      const { buffer, byteOffset, byteLength } = task.input;
      const whole = byteOffset === 0 && byteLength === buffer.byteLength && buffer instanceof ArrayBuffer;
      const transferList = options.transferInput && whole ? [buffer] : [];
      return (await this.piscina.run(task, {
        signal: AbortSignal.timeout(this.timeoutMs),
        transferList,
      })) as WorkerAnswer;
    } catch (error) {
      const err = error as Error;
      if (err.name === 'AbortError' || err.name === 'TimeoutError') {
        return {
          ok: false,
          code: 'PROCESSING_TIMEOUT',
          message: `Processing took longer than ${this.timeoutMs} ms.`,
        };
      }
      // The thread died (out of memory, a native crash): the pool replaces it; the image may be retried.
      return { ok: false, code: 'INTERNAL', message: `The worker thread failed: ${err.message}` };
    }
  }

  get size(): number {
    return this.piscina.threads.length;
  }

  async close(): Promise<void> {
    await this.piscina.close({ force: true });
  }
}
