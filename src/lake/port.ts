import type { Readable } from 'node:stream';

export interface PutOptions {
  contentType?: string;
  durable?: boolean;
}

export interface ObjectInfo {
  key: string;
  bytes: number;
  modifiedAt: Date;
}

/**
 * The lake: where every image and derivative lives. Keys are '/'-separated paths (see object-keys.ts).
 * Adapters: fs.ts (a folder, the embedded default) and s3.ts (S3, MinIO, GCS, R2). Every adapter
 * passes test/lake/contract.ts and refuses unsafe keys with assertSafeKey.
 */
export interface Lake {
  /**
   * Writes atomically: readers see the whole object or nothing. Returns the bytes written.
   * durable (default true): on disk before it returns. Derived objects (renditions, sidecars) pass
   * false: they can be made again from the original, and flushing each one costs throughput.
   */
  put(key: string, body: Buffer | Readable, options?: PutOptions): Promise<number>;
  /** Streams the object; rejects with LakeNotFound when absent. */
  get(key: string): Promise<Readable>;
  getBuffer(key: string): Promise<Buffer>;
  /** undefined when absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Deletes; deleting an absent key is not an error (purges are retried). */
  delete(key: string): Promise<void>;
  deleteMany(keys: string[]): Promise<void>;
  /** Every object whose key starts with prefix, in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** The names of the immediate sub-folders under prefix (which ends with '/'), e.g. ['dt=2026-11-21']. */
  children(prefix: string): Promise<string[]>;
  /** A URL a client can PUT an object's bytes to directly, where the store supports it (S3). */
  presignPut?(key: string, expiresInSeconds: number): Promise<string>;
  /**
   * Where the store has object locking (S3 Object Lock): sets (on) or clears the object's legal hold,
   * so no lifecycle rule or other client can delete it meanwhile. Absent objects are skipped. Answers
   * false, having done nothing, when this lake's bucket has no Object Lock.
   */
  legalHold?(key: string, on: boolean): Promise<boolean>;
  /** Answers when the lake can be written; throws otherwise. */
  check(): Promise<void>;
  describe(): string;
}

export class LakeNotFound extends Error {
  readonly key: string;
  constructor(key: string) {
    super(`No object at ${key}`);
    this.name = 'LakeNotFound';
    this.key = key;
  }
}

/**
 * Throws for a key that could reach outside the lake or name no object: absolute, with '..', or with
 * an empty part. Every adapter checks each key with this before touching storage.
 */
export function assertSafeKey(key: string): void {
  if (key.startsWith('/') || key.split('/').some((part) => part === '..' || part === '')) {
    throw new Error(`Refusing unsafe lake key ${JSON.stringify(key)}`);
  }
}
