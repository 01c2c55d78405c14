import { join } from 'node:path';
import type { S3Settings } from '../config/config.ts';
import { FsLake } from './fs.ts';
import type { Lake } from './port.ts';
import { S3Lake } from './s3.ts';

/**
 * The lake a configuration names: IMAGELAKE_LAKE_URL (s3://bucket/prefix or file:///path), else a
 * folder in the data dir. Opened from the loaded configuration only, never from the environment.
 */
export function openLake(config: { lakeUrl: string | undefined; dataDir: string; s3: S3Settings }): Lake {
  if (!config.lakeUrl) return new FsLake(join(config.dataDir, 'lake'));
  if (config.lakeUrl.startsWith('s3://')) {
    return S3Lake.fromSettings(config.lakeUrl, config.s3);
  }
  if (config.lakeUrl.startsWith('file://')) return new FsLake(new URL(config.lakeUrl).pathname);
  throw new Error(`IMAGELAKE_LAKE_URL=${config.lakeUrl}: use s3://bucket/prefix or file:///path`);
}
