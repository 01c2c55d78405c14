import { service } from './services.ts';

/**
 * A real S3-compatible server: the one IMAGELAKE_S3_ENDPOINT names (with AWS_* credentials), or the
 * project's own MinIO, started by its script. stop() stops it only if this call started it.
 */
export function s3Service(): { env: Record<string, string>; stop: () => void } {
  if (process.env.IMAGELAKE_S3_ENDPOINT) {
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => k.startsWith('AWS_') || k.startsWith('IMAGELAKE_S3_')),
    ) as Record<string, string>;
    return {
      env: { ...env, IMAGELAKE_LAKE_URL: process.env.IMAGELAKE_LAKE_URL ?? 's3://imagelake/lake' },
      stop: () => {},
    };
  }
  return service('s3');
}
