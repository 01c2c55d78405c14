/**
 * Uploads in progress per customer in this process. An upload holds its slot from the moment it is
 * admitted until its answer is sent or its connection closes, so one customer's stalled or slow
 * uploads use up its own slots and never another customer's. Each API process keeps its own count:
 * the guard protects the process that would otherwise hold the stalled connections.
 */
export class UploadSlots {
  private readonly perCustomer: number;
  private readonly inUse = new Map<string, number>();

  constructor(perCustomer: number) {
    this.perCustomer = perCustomer;
  }

  /** A function that gives the slot back (once, however often it is called), or undefined when none is free. */
  take(customerId: string): (() => void) | undefined {
    const held = this.inUse.get(customerId) ?? 0;
    if (held >= this.perCustomer) return undefined;
    this.inUse.set(customerId, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inUse.get(customerId) ?? 1) - 1;
      if (left > 0) this.inUse.set(customerId, left);
      else this.inUse.delete(customerId);
    };
  }

  held(customerId: string): number {
    return this.inUse.get(customerId) ?? 0;
  }
}
