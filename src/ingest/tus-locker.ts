import type { Lock, Locker, RequestRelease } from '@tus/utils';
import { ERRORS } from '@tus/utils';
import type pg from 'pg';
import { tryLockNamed, unlockNamed } from '../catalog/locks.ts';

/**
 * @tus/server's lock on an upload, held in PostgreSQL so it holds across every api process (its
 * default MemoryLocker only sees its own process). Each lock is a session advisory lock on a
 * connection of a small pool of its own, so uploads in progress never take the catalog's
 * connections, and a process that dies mid-upload releases its locks with its connections.
 *
 * A request that wants a lock held in this process asks its holder to let go, as the MemoryLocker
 * does (a client resuming after its connection broke must not wait for the old request to notice).
 * A holder in another process cannot be asked: it lets go when its request ends, which the body-idle
 * timeout bounds, so the wait is bounded by the lock timeout.
 */
export class CatalogLocker implements Locker {
  readonly pool: pg.Pool;
  readonly timeoutMs: number;
  readonly held = new Map<string, RequestRelease>();

  constructor(pool: pg.Pool, timeoutMs: number) {
    this.pool = pool;
    this.timeoutMs = timeoutMs;
  }

  newLock(id: string): Lock {
    return new CatalogLock(this, id);
  }
}

const RETRY_MS = 100;

class CatalogLock implements Lock {
  private readonly locker: CatalogLocker;
  private readonly name: string;
  private client: pg.PoolClient | undefined;

  constructor(locker: CatalogLocker, id: string) {
    this.locker = locker;
    this.name = `tus:${id}`;
  }

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.locker.timeoutMs;
    const client = await this.locker.pool.connect();
    try {
      for (;;) {
        if (!this.locker.held.has(this.name) && (await tryLockNamed(client, this.name))) {
          this.locker.held.set(this.name, requestRelease);
          this.client = client;
          return;
        }
        await this.locker.held.get(this.name)?.();
        if (signal.aborted || Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    } catch (error) {
      client.release();
      throw error;
    }
  }

  async unlock(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    this.locker.held.delete(this.name);
    try {
      await unlockNamed(client, this.name);
      client.release();
    } catch (error) {
      // A connection that cannot unlock is dropped, which releases its locks too.
      client.release(error as Error);
    }
  }
}
