/**
 * Which offset of a partition may be committed. Messages land concurrently and finish out of
 * order, but an offset is committed only when every message before it has landed, so a crash
 * re-delivers what had not landed (and idempotency drops what had).
 */
export class PartitionOffsets<T> {
  private readonly pending = new Map<bigint, T | undefined>();
  private readonly done = new Map<bigint, T>();
  private committable: T | undefined;

  started(offset: bigint): void {
    this.pending.set(offset, undefined);
  }

  finished(offset: bigint, message: T): void {
    this.pending.delete(offset);
    this.done.set(offset, message);
    const lowestPending = this.pending.size
      ? [...this.pending.keys()].reduce((a, b) => (a < b ? a : b))
      : undefined;
    let highest: bigint | undefined;
    for (const done of this.done.keys()) {
      if ((lowestPending === undefined || done < lowestPending) && (highest === undefined || done > highest))
        highest = done;
    }
    if (highest === undefined) return;
    this.committable = this.done.get(highest);
    for (const done of [...this.done.keys()]) if (done <= highest) this.done.delete(done);
  }

  /** The last message whose offset (+1) is safe to commit, once; undefined when nothing new. */
  take(): T | undefined {
    const message = this.committable;
    this.committable = undefined;
    return message;
  }

  get inFlight(): number {
    return this.pending.size;
  }
}
