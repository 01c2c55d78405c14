// The cost of the body-idle watchdog on an upload's body: 64 MiB in 64 KiB chunks (the size Node
// reads a socket in) drained directly and through guardedBody, several rounds each.
//
//   node bench/upload-body.ts [--rounds 5] [--mib 64]
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { guardedBody } from '../src/ingest/body.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string' }, mib: { type: 'string' } } });
const rounds = Number(values.rounds ?? 5);
const mib = Number(values.mib ?? 64);
const chunk = Buffer.alloc(64 * 1024, 1);
const chunks = (mib * 1024 * 1024) / chunk.length;

function source(): Readable {
  let sent = 0;
  return new Readable({
    read() {
      this.push(sent++ < chunks ? chunk : null);
    },
  });
}

async function drain(body: Readable): Promise<number> {
  const start = process.hrtime.bigint();
  let bytes = 0;
  for await (const c of body) bytes += (c as Buffer).length;
  if (bytes !== chunks * chunk.length) throw new Error(`read ${bytes} bytes`);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const results: Record<string, number[]> = { direct: [], guarded: [] };
for (let i = 0; i < rounds; i++) {
  results.direct!.push(await drain(source()));
  results.guarded!.push(await drain(guardedBody(source(), 30_000)));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [name, times] of Object.entries(results)) {
  const s = median(times);
  console.log(
    `${name.padEnd(8)} ${(mib / s).toFixed(0).padStart(6)} MiB/s  (median of ${rounds}, ${s.toFixed(3)} s)`,
  );
}
