import type { Logger } from 'pino';
import { CommandProcess, type CommandSpec } from './command-process.ts';
import type { HostAnswer, ProcessorRequest } from './contract.ts';
import type { Declared, HostInput, ProcessorHost } from './host.ts';

/**
 * A command processor: up to `concurrency` long-lived subprocesses, each serving one image at a
 * time. A process that died (killed for time or memory, crashed, spoke out of turn) is dropped and
 * a fresh one is started for the next image, so one bad image never takes the processor down.
 */
export class CommandHost implements ProcessorHost {
  readonly spec: CommandSpec;
  private readonly log: Logger;
  private readonly idle: CommandProcess[] = [];
  private readonly all = new Set<CommandProcess>();
  private starting = 0;
  private readonly waiters: Array<(p: CommandProcess | Error) => void> = [];
  private declared: Declared | undefined;
  private closed = false;

  constructor(spec: CommandSpec, log: Logger) {
    this.spec = spec;
    this.log = log;
  }

  async start(): Promise<Declared> {
    const { process, declared } = await CommandProcess.start(this.spec, this.log);
    this.declared = declared;
    this.all.add(process);
    this.idle.push(process);
    return declared;
  }

  async run(request: ProcessorRequest, input: HostInput): Promise<HostAnswer> {
    let proc: CommandProcess;
    try {
      proc = await this.acquire();
    } catch (error) {
      return { ok: false, code: 'PROCESSOR_UNAVAILABLE', message: (error as Error).message };
    }
    const bytes = request.image.input === 'preview' ? input.preview! : input.original!;
    try {
      return await proc.request(request as unknown as Record<string, unknown> & { id: string }, bytes);
    } finally {
      this.release(proc);
    }
  }

  private async acquire(): Promise<CommandProcess> {
    if (this.closed) throw new Error('the processor is shutting down');
    // An idle process that died on its own (killed by the OS, say) is dropped, not handed out.
    for (let ready = this.idle.pop(); ready; ready = this.idle.pop()) {
      if (ready.alive) return ready;
      this.all.delete(ready);
      void ready.stop();
    }
    if (this.all.size + this.starting < this.spec.concurrency) {
      this.starting++;
      try {
        const { process, declared } = await CommandProcess.start(this.spec, this.log);
        // A restart must be the same processor: a new version needs a restart of the platform.
        if (this.declared && declared.version !== this.declared.version) {
          void process.stop();
          throw new Error(
            `now reports version ${declared.version}, started as ${this.declared.version}; restart imagelake to take a new version`,
          );
        }
        this.all.add(process);
        return process;
      } finally {
        this.starting--;
      }
    }
    const got = await new Promise<CommandProcess | Error>((resolve) => this.waiters.push(resolve));
    if (got instanceof Error) throw got;
    return got;
  }

  private release(proc: CommandProcess): void {
    if (!proc.alive) {
      this.all.delete(proc);
      void proc.stop();
      // Someone waiting gets a fresh process rather than waiting for a slot nobody will free.
      const waiter = this.waiters.shift();
      if (waiter) this.acquire().then(waiter, waiter);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter(proc);
    else this.idle.push(proc);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter(new Error('the processor is shutting down'));
    await Promise.all([...this.all].map((p) => p.stop()));
    this.all.clear();
    this.idle.length = 0;
  }
}
