import { Piscina } from 'piscina';
import type { JobPriority } from '../catalog/schema.ts';
import type { ProcessTask } from './context.ts';
import { CpuShares } from './cpu-shares.ts';
import type { WorkerAnswer } from './worker.ts';

/** Which lane a task runs in: its job's priority, and whether it came through the express claim. */
export interface Lane {
  priority: JobPriority;
  express: boolean;
}

const ANY: Lane = { priority: 'interactive', express: false };

/**
 * Worker threads that run the pipeline. A task that passes its time limit is aborted, which
 * terminates its thread (the only way to stop a runaway decode) and starts a fresh one.
 *
 * The runner holds more jobs than there are threads (their lake reads and writes overlap the image
 * work), so tasks can wait here for a thread. They wait in lane order, not arrival order:
 * interactive before bulk, so a bulk job claimed a moment earlier does not take the thread an
 * upload was waiting for. Express tasks (a customer with nothing else running) do not wait: they
 * have threads of their own, idle unless such a customer shows up during a backlog. While one
 * runs, a regular task that finishes leaves its thread empty instead of refilling it, so the
 * express image gets the cores it would have had on an idle server, soon after it started.
 */
export class ProcessingPool {
  private readonly piscina: Piscina;
  private readonly timeoutMs: number;
  private readonly regularThreads: number;
  /** Regular tasks on a thread, and express ones. */
  private running = 0;
  private express = 0;
  private readonly cpu = new CpuShares();
  private readonly waiting: Array<{ rank: number; go: () => void }> = [];

  constructor(options: { threads: number; expressThreads?: number; timeoutMs: number }) {
    this.timeoutMs = options.timeoutMs;
    this.regularThreads = options.threads;
    const all = options.threads + (options.expressThreads ?? 0);
    this.piscina = new Piscina({
      filename: new URL('./worker.ts', import.meta.url).href,
      minThreads: all,
      maxThreads: all,
      idleTimeout: 60_000,
    });
  }

  /**
   * transferInput hands the original's memory to the thread instead of copying it. Only for buffers
   * the caller owns outright (read from the lake): memory allocated by native code, like sharp's
   * output buffers, cannot be transferred.
   */
  async run(
    task: ProcessTask,
    options: { transferInput?: boolean; lane?: Lane } = {},
  ): Promise<WorkerAnswer> {
    const lane = options.lane ?? ANY;
    if (lane.express) this.express++;
    else await this.admit(lane.priority === 'interactive' ? 0 : 1);
    const ticket = this.cpu.start();
    try {
      const answer = await this.execute(task, options.transferInput);
      const cpuMs = this.cpu.stop(ticket);
      // The answer's step times go on with it, for the image's trace.
      return answer.ok ? { ...answer, result: { ...answer.result, cpuMs } } : answer;
    } finally {
      this.cpu.forget(ticket);
      if (lane.express) this.express--;
      else this.running--;
      this.admitWaiting();
    }
  }

  /** Regular tasks share `threads` with the express ones running, so an express task is not slowed by a refill. */
  private get full(): boolean {
    return this.running + this.express >= this.regularThreads;
  }

  private admit(rank: number): Promise<void> {
    if (!this.full && this.waiting.length === 0) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((go) => {
      // Few waiters (the runner's concurrency): an insertion keeps them in (rank, arrival) order.
      const at = this.waiting.findIndex((w) => w.rank > rank);
      this.waiting.splice(at === -1 ? this.waiting.length : at, 0, { rank, go });
    });
  }

  private admitWaiting(): void {
    while (!this.full && this.waiting.length > 0) {
      this.running++;
      this.waiting.shift()!.go();
    }
  }

  private async execute(task: ProcessTask, transferInput?: boolean): Promise<WorkerAnswer> {
    try {
      const { buffer, byteOffset, byteLength } = task.input;
      const whole = byteOffset === 0 && byteLength === buffer.byteLength && buffer instanceof ArrayBuffer;
      const transferList = transferInput && whole ? [buffer] : [];
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

  /** Threads for regular tasks (the express ones come on top). */
  get threads(): number {
    return this.regularThreads;
  }

  get size(): number {
    return this.piscina.threads.length;
  }

  async close(): Promise<void> {
    await this.piscina.close({ force: true });
  }
}
