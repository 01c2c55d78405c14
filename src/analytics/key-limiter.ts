import { AppError } from '../errors.ts';

/**
 * How many analyst queries each key runs at once in this process. One key's dashboard or script
 * can then hold only part of the analyst pool; the rest stays for the other keys.
 */
export class KeyLimiter {
  private readonly running = new Map<string, number>();
  private readonly perKey: number;

  constructor(perKey: number) {
    this.perKey = perKey;
  }

  async run<T>(keyId: string, work: () => Promise<T>): Promise<T> {
    const now = this.running.get(keyId) ?? 0;
    if (now >= this.perKey) throw new AppError('SQL_BUSY', `At most ${this.perKey} at once per key.`);
    this.running.set(keyId, now + 1);
    try {
      return await work();
    } finally {
      const left = (this.running.get(keyId) ?? 1) - 1;
      if (left > 0) this.running.set(keyId, left);
      else this.running.delete(keyId);
    }
  }
}
