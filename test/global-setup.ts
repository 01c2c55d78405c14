// Runs once around the whole integration suite: the real servers the tests use (Kafka, an
// S3-compatible store) start here if none is given, and stop at the end only if started here, so
// test files running side by side never stop a server another one is still using.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const services = [
  { name: 'kafka', given: 'IMAGELAKE_KAFKA_BROKERS' },
  { name: 's3', given: 'IMAGELAKE_S3_ENDPOINT' },
  // The tracing tests read what the project's collector wrote, so it is always the project's own.
  { name: 'otel', given: undefined },
];
const started: string[] = [];

function script(name: string): string {
  return fileURLToPath(new URL(`../scripts/services/${name}`, import.meta.url));
}

function running(name: string): boolean {
  try {
    execFileSync('bash', [script(name), 'status'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function globalSetup(): Promise<void> {
  // The Python SDK and example processors' environment (a no-op once made).
  execFileSync('bash', [script('python'), 'ensure'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 600_000,
  });
  for (const service of services) {
    if ((service.given && process.env[service.given]) || running(service.name)) continue;
    execFileSync('bash', [script(service.name), 'start'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 1_200_000,
    });
    started.push(service.name);
  }
}

export async function globalTeardown(): Promise<void> {
  for (const name of started) execFileSync('bash', [script(name), 'stop'], { stdio: 'ignore' });
}
