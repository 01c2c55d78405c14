import { Piscina } from 'piscina';
import type { Decoded, ImageMetadata } from '../context.ts';
import type { HostAnswer, ProcessorRequest } from './contract.ts';
import type { Declared, ProcessorHost } from './host.ts';
import type { ModuleTask } from './module-worker.ts';
import type { ProcessorSpec } from './spec.ts';

type ModuleSpec = Extract<ProcessorSpec, { kind: 'module' }>;

/**
 * A JS/TS module processor in worker threads of its own: its heap is capped (resourceLimits), a run
 * past its time limit terminates the thread, and a thread that dies is replaced. The processor's
 * failure is this image's step failing, never the worker process.
 */
export class ModuleHost implements ProcessorHost {
  readonly spec: ModuleSpec;
  private readonly piscina: Piscina;

  constructor(spec: ModuleSpec) {
    this.spec = spec;
    this.piscina = new Piscina({
      filename: new URL('./module-worker.ts', import.meta.url).href,
      minThreads: 1,
      maxThreads: spec.concurrency,
      idleTimeout: 60_000,
      resourceLimits: { maxOldGenerationSizeMb: Math.max(16, Math.round(spec.memoryBytes / 2 ** 20)) },
    });
  }

  async start(): Promise<Declared> {
    return (await this.piscina.run({ module: this.spec.module }, { name: 'describe' })) as Declared;
  }

  async run(
    request: ProcessorRequest,
    input: { original?: Buffer; decoded?: Decoded; metadata: ImageMetadata },
  ): Promise<HostAnswer> {
    const task: ModuleTask = {
      module: this.spec.module,
      // Modules always take the original (spec.ts refuses "input" for them).
      bytes: input.original!,
      decoded: input.decoded!,
      metadata: input.metadata,
      context: {
        imageId: request.image.id,
        customerId: request.image.customerId,
        source: request.image.source,
        previous: request.previous,
        config: request.config,
      },
    };
    try {
      return (await this.piscina.run(task, {
        signal: AbortSignal.timeout(this.spec.timeoutMs),
      })) as HostAnswer;
    } catch (error) {
      const err = error as NodeJS.ErrnoException;
      if (err.name === 'AbortError' || err.name === 'TimeoutError') {
        return {
          ok: false,
          code: 'PROCESSOR_TIMEOUT',
          message: `ran past its time limit of ${this.spec.timeoutMs} ms`,
        };
      }
      if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') {
        return {
          ok: false,
          code: 'PROCESSOR_MEMORY',
          message: `ran out of its ${Math.round(this.spec.memoryBytes / 2 ** 20)} MB heap`,
        };
      }
      return { ok: false, code: 'PROCESSOR_CRASHED', message: `its thread died: ${err.message}` };
    }
  }

  async close(): Promise<void> {
    await this.piscina.close({ force: true });
  }
}
