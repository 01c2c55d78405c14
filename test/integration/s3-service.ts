import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/services/s3', import.meta.url));

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
  let running = true;
  try {
    execFileSync('bash', [SCRIPT, 'status'], { stdio: 'ignore' });
  } catch {
    running = false;
  }
  if (!running)
    execFileSync('bash', [SCRIPT, 'start'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 1_200_000 });
  const env = Object.fromEntries(
    execFileSync('bash', [SCRIPT, 'env'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((line) => line.split('=') as [string, string]),
  );
  return {
    env,
    stop: () => (running ? undefined : execFileSync('bash', [SCRIPT, 'stop'], { stdio: 'ignore' })),
  };
}
