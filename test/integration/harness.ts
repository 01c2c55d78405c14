import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { Fact } from '../../src/analytics/facts.ts';
import type { Clock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config/config.ts';
import { freePort } from '../../src/free-port.ts';
import { audit } from '../../src/retention/audit.ts';
import { type Role, type RunningServer, startServer } from '../../src/server.ts';

const BIN = fileURLToPath(new URL('../../bin/imagelake.js', import.meta.url));
export const ADMIN = 'il_admin_test-token-0123456789abcdefghijklmnopqrstuvwxyz';

export interface TestServer {
  url: string;
  dataDir: string;
  server: RunningServer;
  stop(): Promise<void>;
}

/** The whole platform in this process, on embedded defaults, in a fresh data dir. */
export async function startTestServer(
  env: Record<string, string> = {},
  roles?: Role[],
  clock?: Clock,
): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-it-'));
  const config = loadConfig({
    IMAGELAKE_DATA_DIR: dataDir,
    IMAGELAKE_PORT: '0',
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_POLL_INTERVAL: '200ms',
    // No load balancer watches readiness here: stopping need not wait for one to notice.
    IMAGELAKE_DRAIN_DELAY: '0s',
    // A free port at every start: test files run side by side, and a saved port may be taken by
    // another file's server when this one restarts (test/integration/embedded-port.test.ts pins the
    // stable default).
    IMAGELAKE_POSTGRES_PORT: '0',
    ...env,
  });
  const server = await startServer(config, {
    roles,
    clock,
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  });
  return {
    url: server.url!,
    dataDir,
    server,
    stop: async () => {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A free port for a server a test starts with a port of its own (src/free-port.ts says where). */
export { freePort };

/** `imagelake serve` as a separate process, started as a user starts it (bin/imagelake.js), for tests that kill it. */
export async function spawnServer(
  env: Record<string, string>,
  roles?: string[],
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const port = await freePort();
  let output = '';
  const child = spawn(process.execPath, [BIN, 'serve', ...(roles ? ['--roles', roles.join(',')] : [])], {
    env: {
      ...process.env,
      IMAGELAKE_PORT: String(port),
      IMAGELAKE_LOG_LEVEL: 'warn',
      IMAGELAKE_DRAIN_DELAY: '0s',
      IMAGELAKE_POSTGRES_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited early:\n${output}`);
    const ready = await fetch(`${url}/readyz`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ready) return { child, url, output: () => output };
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error(`server did not become ready:\n${output}`);
}

export async function api(
  url: string,
  key: string,
  method: string,
  path: string,
  json?: unknown,
): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(json !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: json !== undefined ? JSON.stringify(json) : undefined,
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, body, headers: response.headers };
}

export async function createCustomer(url: string, name: string): Promise<{ id: string; apiKey: string }> {
  const { status, body } = await api(url, ADMIN, 'POST', '/v1/customers', { name });
  if (status !== 201) throw new Error(`creating a customer answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

export async function upload(url: string, key: string, bytes: Buffer, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}/v1/images`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', ...headers },
    body: new Uint8Array(bytes),
  });
  return { status: response.status, body: (await response.json()) as any, headers: response.headers };
}

/** Polls an image until it is processed or failed. */
export async function settled(url: string, key: string, id: string, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api(url, key, 'GET', `/v1/images/${id}`);
    if (body.status === 'processed' || body.status === 'failed') return body;
    if (Date.now() > deadline) throw new Error(`image ${id} still ${body.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A clock tests can move forward: days pass in an instant. */
export class TestClock implements Clock {
  offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}

export const DAY = 86_400_000;

/** Runs the imagelake command as a user would, collecting what it prints. */
export function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.on('close', (code) => resolve({ code, out }));
  });
}

/** A processed image's fact as the worker records it, with the given parts; the rest are small constants. */
export function factFor(customerId: string, at: Date, over: Partial<Fact> = {}): Fact {
  return {
    imageId: randomUUID(),
    customerId,
    source: 'http',
    format: 'jpeg',
    outcome: 'processed',
    errorCode: null,
    bytes: 1000,
    width: 10,
    height: 10,
    receivedAt: at,
    processedAt: at,
    queueMs: 1,
    processingMs: 5,
    processors: { quality: '1.0.0' },
    dimensions: {},
    labels: [],
    processorRuns: {},
    ...over,
  };
}

/** Uploads `bytes` and waits until the image is processed (it fails the test otherwise). */
export async function uploadProcessed(t: TestServer, key: string, bytes: Buffer): Promise<any> {
  const landed = await upload(t.url, key, bytes);
  assert.equal(landed.status, 202, JSON.stringify(landed.body));
  const image = await settled(t.url, key, landed.body.id);
  assert.equal(image.status, 'processed');
  return image;
}

/** The retention audit of a test server's catalog and lake, with a window of `retentionMs` (7 days). */
export function auditOf(t: TestServer, clock: Clock, retentionMs = 7 * DAY) {
  return audit({ db: t.server.db, lake: t.server.lake, clock, retentionMs, statsRetentionMs: 400 * DAY });
}
