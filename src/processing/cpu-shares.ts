/**
 * CPU seconds per image, for usage billing. The pipeline's work is done by its thread and by
 * libvips's own threads, which no per-thread counter sees (a thread's own CPU was a few
 * milliseconds of a 200 ms image). So the whole process's CPU is measured, less the main thread's
 * (HTTP, the catalog, the lake), and what is left over each interval is shared equally among the
 * images on a thread during it. The shares add up to the CPU the pipeline threads really used.
 */
export class CpuShares {
  private readonly running = new Map<symbol, number>();
  private lastOff = offMainMicros();

  /** An image starts on a thread; returns its ticket. */
  start(): symbol {
    this.settle();
    const ticket = Symbol('image');
    this.running.set(ticket, 0);
    return ticket;
  }

  /** The image left its thread: its share of the CPU, in milliseconds. */
  stop(ticket: symbol): number {
    this.settle();
    const micros = this.running.get(ticket) ?? 0;
    this.running.delete(ticket);
    return micros / 1000;
  }

  /** Drops a ticket that was not stopped (its task threw). */
  forget(ticket: symbol): void {
    this.running.delete(ticket);
  }

  private settle(): void {
    const now = offMainMicros();
    const spent = Math.max(0, now - this.lastOff);
    this.lastOff = now;
    if (this.running.size === 0) return;
    const each = spent / this.running.size;
    for (const [ticket, micros] of this.running) this.running.set(ticket, micros + each);
  }
}

/** Microseconds of CPU the process has used outside its main thread. */
function offMainMicros(): number {
  const all = process.cpuUsage();
  const main = process.threadCpuUsage();
  return all.user + all.system - main.user - main.system;
}
