import { join } from 'node:path';
import type { S3Settings } from '../config/config.ts';
import { FsLake } from './fs.ts';
import type { Lake } from './port.ts';

/**
 * The lake a configuration names: IMAGELAKE_LAKE_URL (s3://bucket/prefix or file:///path), else a
 * folder in the data dir. Opened from the loaded configuration only, never from the environment.
 * The S3 adapter is loaded only for an S3 lake: the AWS SDK is about 7 MB of heap that a process on
 * a folder lake would otherwise hold, and mark at every full collection.
 */
export async function openLake(config: {
  lakeUrl: string | undefined;
  dataDir: string;
  s3: S3Settings;
}): Promise<Lake> {
  if (!config.lakeUrl) return new FsLake(join(config.dataDir, 'lake'));
  if (config.lakeUrl.startsWith('s3://')) {
    const { S3Lake } = await import('./s3.ts');
    return S3Lake.fromSettings(config.lakeUrl, config.s3);
  }
  if (config.lakeUrl.startsWith('file://')) return new FsLake(new URL(config.lakeUrl).pathname);
  throw new Error(`IMAGELAKE_LAKE_URL=${config.lakeUrl}: use s3://bucket/prefix or file:///path`);
}
