import type { AttemptRecord } from '../catalog/webhook-deliveries.ts';

/**
 * Attempts recorded in one statement at most, and how long the first of a batch waits for others:
 * a few milliseconds more before an attempt shows in the delivery log buy statements of a hundred
 * rows rather than a handful (the dispatcher's slot is free from the answer on either way).
 */
const RECORD_BATCH = 500;
const RECORD_LINGER_MS = 10;

/**
 * Records a dispatcher's attempts in batches: each attempt waits for the statement that records it
 * with the others that ended meanwhile, one batch at a time, so the catalog sees a write per batch
 * rather than per delivery.
 */
export class AttemptRecorder {
  private readonly write: (records: AttemptRecord[]) => Promise<Set<string>>;
  private readonly waiting: Array<{
    record: AttemptRecord;
    resolve: (recorded: boolean) => void;
    reject: (error: unknown) => void;
  }> = [];
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** `write` records a batch and returns the ids it recorded (catalog/webhook-deliveries.ts `recordAttempts`). */
  constructor(write: (records: AttemptRecord[]) => Promise<Set<string>>) {
    this.write = write;
  }

  /** Resolves when the attempt's batch is written: whether it was recorded. */
  record(record: AttemptRecord): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ record, resolve, reject });
      // A batch waits a moment for others to end (after the one being written, if any), unless it
      // is full already.
      if (!this.writing) this.schedule();
    });
  }

  private schedule(): void {
    if (this.waiting.length >= RECORD_BATCH) this.flush();
    else if (this.waiting.length > 0) this.timer ??= setTimeout(() => this.flush(), RECORD_LINGER_MS);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.writing) return;
    const batch = this.waiting.splice(0, RECORD_BATCH);
    this.writing = this.write(batch.map((b) => b.record)).then(
      (recorded) => {
        for (const b of batch) b.resolve(recorded.has(b.record.id));
      },
      (error: unknown) => {
        for (const b of batch) b.reject(error);
      },
    );
    void this.writing.finally(() => {
      this.writing = undefined;
      this.schedule();
    });
  }
}
