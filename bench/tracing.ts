// The cost of tracing: the pipeline benchmark (bench/pipeline.ts) with tracing off and with tracing
// on at 100% sampling, exporting every span to the project's collector (scripts/services/otel), in
// one run. Each side runs in a process of its own (the SDK is loaded at start or never), three
// times, alternating, so the machine's drift falls on both alike.
//
//   npm run bench:tracing -- [FOLDER] [--limit N] [--concurrency N] [--runs N]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { limit: { type: 'string' }, concurrency: { type: 'string' }, runs: { type: 'string' } },
});
const runs = Number(values.runs ?? 3);
const root = fileURLToPath(new URL('..', import.meta.url));
const otel = join(root, 'scripts/services/otel');
execFileSync('bash', [otel, 'start'], { stdio: 'inherit' });
const endpoint = execFileSync('bash', [otel, 'env'], { encoding: 'utf8' })
  .split('\n')
  .find((line) => line.startsWith('OTEL_EXPORTER_OTLP_ENDPOINT='))!
  .split('=')[1]!;

const args = [
  ...positionals,
  ...(values.limit ? ['--limit', values.limit] : []),
  ...(values.concurrency ? ['--concurrency', values.concurrency] : []),
];
// Nothing of the caller's own OTEL_* leaks into the untraced side.
const untraced = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
const dir = mkdtempSync(join(tmpdir(), 'imagelake-bench-tracing-'));

interface Run {
  imagesPerSecond: number;
  cpuMsPerImage: number;
}

function once(tracing: boolean, round: number): Run {
  const report = join(dir, `${tracing ? 'on' : 'off'}-${round}.json`);
  const env: NodeJS.ProcessEnv = {
    ...untraced,
    BENCH_SKIP_BASE: '1',
    BENCH_REPORT: report,
    ...(tracing
      ? {
          OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
          OTEL_TRACES_SAMPLER: 'always_on',
          OTEL_SERVICE_NAME: 'imagelake-bench',
        }
      : {}),
  };
  const result = spawnSync(process.execPath, [join(root, 'bench/pipeline.ts'), ...args], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (result.status !== 0) throw new Error(`bench/pipeline.ts exited ${result.status}`);
  const { traced, imagesPerSecond, cpuMsPerImage } = JSON.parse(readFileSync(report, 'utf8'));
  if (traced !== tracing)
    throw new Error(`tracing was ${traced ? 'on' : 'off'}, expected ${tracing ? 'on' : 'off'}`);
  console.log(
    `run ${round + 1} tracing ${tracing ? 'on ' : 'off'}: ${imagesPerSecond.toFixed(2)} images/s, ${cpuMsPerImage.toFixed(0)} CPU ms/image`,
  );
  return { imagesPerSecond, cpuMsPerImage };
}

const off: Run[] = [];
const on: Run[] = [];
try {
  for (let round = 0; round < runs; round++) {
    // Alternating which goes first, so neither side always runs on a warmer machine.
    if (round % 2 === 0) {
      off.push(once(false, round));
      on.push(once(true, round));
    } else {
      on.push(once(true, round));
      off.push(once(false, round));
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
const rates = (runs: Run[]) => runs.map((r) => r.imagesPerSecond);
const cpus = (runs: Run[]) => runs.map((r) => r.cpuMsPerImage);
const row = (runs: Run[]) => ({
  'median images/s': +median(rates(runs)).toFixed(2),
  'images/s spread': spread(rates(runs)),
  'median CPU ms/image': +median(cpus(runs)).toFixed(0),
  'CPU spread': spread(cpus(runs)),
});
console.log('');
console.table({ 'tracing off': row(off), 'tracing on (100%)': row(on) });
const perRun = on.map((r, i) => (r.imagesPerSecond / off[i]!.imagesPerSecond).toFixed(3));
console.log(`images/s on / off per run: ${perRun.join(', ')}`);
const ratio = median(rates(on)) / median(rates(off));
console.log(`images/s on / off (medians): ${ratio.toFixed(3)}; cost ${((1 - ratio) * 100).toFixed(1)}%`);
// CPU of the platform's process per image: a busy machine disturbs it far less than images/s.
const cpuRatio = median(cpus(on)) / median(cpus(off));
console.log(
  `CPU per image on / off (medians): ${cpuRatio.toFixed(3)}; cost ${((cpuRatio - 1) * 100).toFixed(1)}%`,
);
