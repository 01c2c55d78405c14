import { join } from 'node:path';
import { FsLake } from './fs.ts';
import type { Lake } from './port.ts';
import { S3Lake } from './s3.ts';

/** The lake a configuration names: IMAGELAKE_LAKE_URL (s3://bucket/prefix or file:///path), else a folder in the data dir. */
export function openLake(config: {
  lakeUrl: string | undefined;
  dataDir: string;
  s3: { endpoint: string | undefined; pathStyle: string | undefined };
}): Lake {
  if (!config.lakeUrl) return new FsLake(join(config.dataDir, 'lake'));
  if (config.lakeUrl.startsWith('s3://')) {
    return S3Lake.fromUrl(config.lakeUrl, {
      ...process.env,
      IMAGELAKE_S3_ENDPOINT: config.s3.endpoint,
      IMAGELAKE_S3_PATH_STYLE: config.s3.pathStyle,
    });
  }
  if (config.lakeUrl.startsWith('file://')) return new FsLake(new URL(config.lakeUrl).pathname);
  throw new Error(`IMAGELAKE_LAKE_URL=${config.lakeUrl}: use s3://bucket/prefix or file:///path`);
}
