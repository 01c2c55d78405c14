import type { Readable } from 'node:stream';
import type { Metrics } from '../observability/metrics.ts';
import type { Lake, PutOptions } from './port.ts';

/**
 * A lake that counts what is asked of it (imagelake_lake_requests_total by operation, and the bytes
 * written), whatever the adapter: the figures an operator sizes an S3 bucket and its request rates
 * by. Every other behaviour is the adapter's own.
 */
export function meteredLake(lake: Lake, metrics: Pick<Metrics, 'lakeRequests' | 'lakeWrittenBytes'>): Lake {
  const count = (operation: string, objects = 1) => metrics.lakeRequests.inc({ operation }, objects);
  const metered: Lake = {
    async put(key: string, body: Buffer | Readable, options?: PutOptions) {
      const bytes = await lake.put(key, body, options);
      count('put');
      metrics.lakeWrittenBytes.inc({ kind: options?.durable === false ? 'derived' : 'durable' }, bytes);
      return bytes;
    },
    get(key) {
      count('get');
      return lake.get(key);
    },
    getBuffer(key) {
      count('get');
      return lake.getBuffer(key);
    },
    head(key) {
      count('head');
      return lake.head(key);
    },
    delete(key) {
      count('delete');
      return lake.delete(key);
    },
    deleteMany(keys) {
      if (keys.length > 0) count('delete', keys.length);
      return lake.deleteMany(keys);
    },
    list(prefix) {
      count('list');
      return lake.list(prefix);
    },
    children(prefix) {
      count('children');
      return lake.children(prefix);
    },
    check: () => lake.check(),
    describe: () => lake.describe(),
  };
  if (lake.presignPut) metered.presignPut = lake.presignPut.bind(lake);
  if (lake.legalHold) metered.legalHold = lake.legalHold.bind(lake);
  return metered;
}
