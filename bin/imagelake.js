#!/usr/bin/env node
// Runs the imagelake CLI on Node 24 or newer. Where the machine's node is older, it re-runs itself
// with the Node 24 the project installs (npm package "node" in devDependencies).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const tracing = fileURLToPath(new URL('../src/observability/tracing.ts', import.meta.url));
const major = Number(process.versions.node.split('.')[0]);

if (major >= 24) {
  // Tracing starts before the program loads, so its instrumentations see pg, http and the AWS SDK
  // load; without OTEL_* settings it loads nothing (README: Tracing).
  await (await import(tracing)).startTracing();
  await import(main);
} else {
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(pinned)) {
    console.error(
      `imagelake needs Node 24 or newer (this is ${process.version}); run "npm install" in the project first.`,
    );
    process.exit(1);
  }
  const child = spawn(pinned, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
