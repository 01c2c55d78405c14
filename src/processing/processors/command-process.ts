import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { answeredError, type DerivedImage, type HostAnswer, type HostErrorCode } from './contract.ts';
import { FrameReader, frame } from './frames.ts';
import { groupMemory } from './group-memory.ts';
import type { Declared } from './host.ts';
import type { ProcessorSpec } from './spec.ts';

export type CommandSpec = Extract<ProcessorSpec, { kind: 'command' }>;

const MEMORY_SAMPLE_MS = 50;
const STDERR_TAIL = 20;
const EXIT_GRACE_MS = 5000;

interface Pending {
  id: string;
  resolve: (answer: HostAnswer) => void;
  header?: { ok: true; metadata: unknown; labels?: unknown; images: Array<{ name: string; format: string }> };
  images: DerivedImage[];
}

/**
 * One long-lived subprocess speaking the stdio protocol, watched by its supervisor: a request past
 * the time limit or resident memory past the limit kills it; an exit, a broken frame or a malformed
 * answer fails the request in hand. A dead process is never reused; CommandHost starts another.
 */
export class CommandProcess {
  readonly spec: CommandSpec;
  private readonly child: ChildProcess;
  private readonly log: Logger;
  private readonly stderrTail: string[] = [];
  private pending: Pending | undefined;
  private onHello: ((frame: Buffer) => void) | undefined;
  private death: { code: HostErrorCode; message: string } | undefined;
  private exited = false;
  /** stop() asked it to go: a clean exit then is the protocol's end, not a crash. */
  private stopping = false;
  private readonly exitWaiters: Array<() => void> = [];

  private constructor(spec: CommandSpec, log: Logger) {
    this.spec = spec;
    this.log = log;
    const [exe, ...args] = spec.command;
    this.child = spawn(exe!, args, {
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env, PYTHONUNBUFFERED: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
      // A group of its own: what it starts (a pool, an ImageMagick) is measured and killed with it.
      detached: true,
    });
    const reader = new FrameReader(
      (f) => this.onFrame(f),
      (error) => this.kill('PROCESSOR_OUTPUT_INVALID', error.message),
    );
    this.child.stdout!.on('data', (chunk: Buffer) => reader.push(chunk));
    let partial = '';
    this.child.stderr!.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.stderrLine(line);
    });
    // Writing to a process that just died raises EPIPE on stdin; the exit handler reports it.
    this.child.stdin!.on('error', () => {});
    // A command that cannot be spawned (ENOENT) may never emit 'exit'; it counts as exited.
    this.child.on('error', (error) => {
      this.died('PROCESSOR_CRASHED', `could not be started: ${error.message}`);
      if (this.child.pid === undefined) this.markExited();
    });
    this.child.on('exit', (code, signal) => {
      // Whatever it left running in its group goes with it, so no orphan outlives its processor.
      this.signalGroup('SIGKILL');
      if (partial) this.stderrLine(partial);
      this.died(
        'PROCESSOR_CRASHED',
        `exited (${signal ? `signal ${signal}` : `code ${code}`})${this.tail()}`,
        this.stopping && code === 0 ? 'debug' : 'warn',
      );
      this.markExited();
    });
  }

  /** Starts the command and waits for its hello frame. */
  static async start(
    spec: CommandSpec,
    log: Logger,
  ): Promise<{ process: CommandProcess; declared: Declared }> {
    const proc = new CommandProcess(spec, log);
    const hello = await new Promise<Buffer | { code: HostErrorCode; message: string }>((resolve) => {
      const timer = setTimeout(
        () =>
          resolve({ code: 'PROCESSOR_TIMEOUT', message: `said no hello within ${spec.startTimeoutMs} ms` }),
        spec.startTimeoutMs,
      );
      proc.onHello = (f) => {
        clearTimeout(timer);
        resolve(f);
      };
      proc.exitWaiters.push(() => {
        clearTimeout(timer);
        resolve(proc.death ?? { code: 'PROCESSOR_CRASHED', message: 'exited' });
      });
    });
    proc.onHello = undefined;
    if (!Buffer.isBuffer(hello)) {
      proc.kill(hello.code, hello.message);
      throw new Error(`command ${JSON.stringify(spec.command.join(' '))} ${hello.message}`);
    }
    let declared: Declared;
    try {
      const h = JSON.parse(hello.toString('utf8')) as Partial<Declared> & { imagelake?: unknown };
      if (h.imagelake !== 1) throw new Error('the hello frame lacks "imagelake": 1');
      if (typeof h.name !== 'string' || typeof h.version !== 'string')
        throw new Error('the hello frame lacks name or version');
      declared = { name: h.name, version: h.version, fields: h.fields };
    } catch (error) {
      proc.kill('PROCESSOR_OUTPUT_INVALID', (error as Error).message);
      throw new Error(`command ${JSON.stringify(spec.command.join(' '))}: ${(error as Error).message}`);
    }
    return { process: proc, declared };
  }

  get alive(): boolean {
    return !this.death;
  }

  /** Sends one image and waits for the answer, under the time and memory limits. */
  request(header: Record<string, unknown> & { id: string }, bytes: Buffer): Promise<HostAnswer> {
    if (this.death) return Promise.resolve({ ok: false, ...this.death });
    return new Promise<HostAnswer>((resolve) => {
      const timer = setTimeout(
        () =>
          this.kill('PROCESSOR_TIMEOUT', `ran past its time limit of ${this.spec.timeoutMs} ms; restarted`),
        this.spec.timeoutMs,
      );
      const sampler = setInterval(() => void this.checkMemory(), MEMORY_SAMPLE_MS);
      const unwatch = this.child.pid
        ? groupMemory.watch(this.child.pid, (bytes) => this.checkGroup(bytes))
        : () => {};
      this.pending = {
        id: header.id,
        images: [],
        resolve: (answer) => {
          clearTimeout(timer);
          clearInterval(sampler);
          unwatch();
          this.pending = undefined;
          resolve(answer);
        },
      };
      const stdin = this.child.stdin!;
      for (const part of [...frame(Buffer.from(JSON.stringify(header))), ...frame(bytes)]) stdin.write(part);
    });
  }

  /** Closes stdin, the protocol's "no more work"; SIGTERM then SIGKILL if it lingers. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    this.stopping = true;
    this.child.stdin!.end();
    const term = setTimeout(() => this.signalGroup('SIGTERM'), EXIT_GRACE_MS);
    const killer = setTimeout(() => this.signalGroup('SIGKILL'), EXIT_GRACE_MS * 2);
    await gone;
    clearTimeout(term);
    clearTimeout(killer);
  }

  private onFrame(f: Buffer): void {
    if (this.onHello) {
      this.onHello(f);
      return;
    }
    const p = this.pending;
    if (!p) {
      this.kill('PROCESSOR_OUTPUT_INVALID', 'wrote a frame nobody asked for');
      return;
    }
    if (!p.header) {
      let answer: Record<string, unknown>;
      try {
        answer = JSON.parse(f.toString('utf8'));
      } catch {
        this.kill('PROCESSOR_OUTPUT_INVALID', 'answered with a frame that is not JSON');
        return;
      }
      if (answer?.id !== p.id) {
        this.kill(
          'PROCESSOR_OUTPUT_INVALID',
          `answered request ${JSON.stringify(answer?.id)} instead of ${p.id}`,
        );
        return;
      }
      if (answer.ok === false) {
        p.resolve(answeredError(answer.error));
        return;
      }
      const images = answer.images ?? [];
      if (
        answer.ok !== true ||
        !Array.isArray(images) ||
        images.some((i) => typeof i?.name !== 'string' || typeof i?.format !== 'string')
      ) {
        this.kill(
          'PROCESSOR_OUTPUT_INVALID',
          'answered without "ok", or with "images" that are not [{name, format}]',
        );
        return;
      }
      p.header = { ok: true, metadata: answer.metadata, labels: answer.labels, images };
    } else {
      const next = p.header.images[p.images.length]!;
      p.images.push({ name: next.name, format: next.format, data: f });
    }
    if (p.images.length === p.header.images.length) {
      p.resolve({ ok: true, metadata: p.header.metadata, labels: p.header.labels, images: p.images });
    }
  }

  private async checkMemory(): Promise<void> {
    const pid = this.child.pid;
    if (!pid || this.death) return;
    let status: string;
    try {
      status = await readFile(`/proc/${pid}/status`, 'utf8');
    } catch {
      return; // Gone already (the exit handler reports it), or not Linux: no memory limit there.
    }
    const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
    if (kb * 1024 > this.spec.memoryBytes) {
      this.kill(
        'PROCESSOR_MEMORY',
        `used ${Math.round(kb / 1024)} MB, over its limit of ${Math.round(this.spec.memoryBytes / 2 ** 20)} MB; restarted`,
      );
    }
  }

  /** The process together with the group it leads (its own children). */
  private checkGroup(bytes: number): void {
    if (this.death || bytes <= this.spec.memoryBytes) return;
    this.kill(
      'PROCESSOR_MEMORY',
      `used ${Math.round(bytes / 2 ** 20)} MB with the processes it started, over its limit of ${Math.round(this.spec.memoryBytes / 2 ** 20)} MB; restarted`,
    );
  }

  private kill(code: HostErrorCode, message: string): void {
    this.died(code, message);
    this.signalGroup('SIGKILL');
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (!pid) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already; the process itself may still need the signal.
      this.child.kill(signal);
    }
  }

  /** The first cause wins: a kill for memory is reported as memory, not as the exit it causes. */
  private died(code: HostErrorCode, message: string, level: 'warn' | 'debug' = 'warn'): void {
    if (!this.death) {
      this.death = { code, message };
      this.log[level](
        { processor: this.spec.name, code, pid: this.child.pid },
        `processor process: ${message}`,
      );
    }
    this.pending?.resolve({ ok: false, ...this.death });
  }

  private markExited(): void {
    this.exited = true;
    for (const wake of this.exitWaiters.splice(0)) wake();
  }

  private stderrLine(line: string): void {
    if (!line) return;
    this.stderrTail.push(line);
    if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
    this.log.info({ processor: this.spec.name, pid: this.child.pid }, line);
  }

  private tail(): string {
    const last = this.stderrTail.slice(-5).join('\n');
    return last ? `; its last words on stderr:\n${last}` : '';
  }
}
