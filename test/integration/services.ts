import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * A real server the tests need (scripts/services/NAME): started here if it is not running (the
 * suite's global setup normally has started it already), with the settings its `env` prints.
 * stop() stops it only if this call started it.
 */
export function service(name: 'kafka' | 's3' | 'otel'): { env: Record<string, string>; stop: () => void } {
  const script = fileURLToPath(new URL(`../../scripts/services/${name}`, import.meta.url));
  let running = true;
  try {
    execFileSync('bash', [script, 'status'], { stdio: 'ignore' });
  } catch {
    running = false;
  }
  if (!running)
    execFileSync('bash', [script, 'start'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 1_200_000 });
  const env = Object.fromEntries(
    execFileSync('bash', [script, 'env'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((line) => line.split('=') as [string, string]),
  );
  return {
    env,
    stop: () => (running ? undefined : execFileSync('bash', [script, 'stop'], { stdio: 'ignore' })),
  };
}
