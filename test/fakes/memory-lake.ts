import { Readable } from 'node:stream';
import { assertSafeKey, type Lake, LakeNotFound, type ObjectInfo } from '../../src/lake/port.ts';

/** An in-memory lake for unit tests. It passes the same contract suite as the real adapters. */
export class MemoryLake implements Lake {
  readonly objects = new Map<string, { data: Buffer; modifiedAt: Date }>();

  describe(): string {
    return 'memory://';
  }

  private assertSafe(key: string): void {
    assertSafeKey(key);
  }

  async put(key: string, body: Buffer | Readable): Promise<number> {
    this.assertSafe(key);
    const chunks: Buffer[] = [];
    if (Buffer.isBuffer(body)) chunks.push(body);
    else for await (const chunk of body) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    this.objects.set(key, { data, modifiedAt: new Date() });
    return data.length;
  }

  async get(key: string): Promise<Readable> {
    return Readable.from([await this.getBuffer(key)]);
  }

  async getBuffer(key: string): Promise<Buffer> {
    const object = this.objects.get(key);
    if (!object) throw new LakeNotFound(key);
    return object.data;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const object = this.objects.get(key);
    return object ? { key, bytes: object.data.length, modifiedAt: object.modifiedAt } : undefined;
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async deleteMany(keys: string[]): Promise<void> {
    for (const key of keys) this.objects.delete(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for (const key of [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort()) {
      const info = await this.head(key);
      if (info) yield info;
    }
  }

  async children(prefix: string): Promise<string[]> {
    const names = new Set<string>();
    for (const key of this.objects.keys()) {
      if (!key.startsWith(prefix)) continue;
      const rest = key.slice(prefix.length).split('/');
      if (rest.length > 1) names.add(rest[0]!);
    }
    return [...names].sort();
  }

  async check(): Promise<void> {}
}
