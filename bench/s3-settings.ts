// The S3 server the S3 benchmarks use: the one in IMAGELAKE_S3_ENDPOINT (with AWS_* credentials), or
// the project's MinIO (scripts/services/s3), started if need be.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const s3script = fileURLToPath(new URL('../scripts/services/s3', import.meta.url));

/** MinIO's settings: those in the environment, or the scripts/services/s3 server's (started if need be). */
export function s3Settings(): Record<string, string> {
  if (process.env.IMAGELAKE_S3_ENDPOINT)
    return Object.fromEntries(
      Object.entries(process.env).filter(([k]) => k.startsWith('AWS_') || k.startsWith('IMAGELAKE_S3_')),
    ) as Record<string, string>;
  execFileSync('bash', [s3script, 'start'], { stdio: ['ignore', 'ignore', 'inherit'] });
  return Object.fromEntries(
    execFileSync('bash', [s3script, 'env'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
}
