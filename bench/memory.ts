// Memory under load: 50 concurrent uploads of the largest photos (from five customers) while the
// workers process them,
// on one `imagelake serve` (every role, embedded catalog, folder lake). Samples the resident memory
// of the server's whole process tree (node, its threads, the embedded PostgreSQL) every 100 ms and
// prints the peak, beside the same tree's idle figure taken in the same run. The resident figure is
// RSS summed over the tree's processes, which counts PostgreSQL's shared memory once per backend;
// the proportional one (Pss) counts every page once, which is what the tree takes from the machine.
//
//   node bench/memory.ts [FOLDER] [--uploads 50] [--rounds 2]
//
// Aim: peak under 1.5 GB, nothing refused but by the documented limits (the answers are counted
// by status and code).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { processTree, pssOf, rssOf } from './process-tree.ts';
import { startServe } from './serve-process.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { uploads: { type: 'string', default: '50' }, rounds: { type: 'string', default: '2' } },
});
const UPLOADS = Number(values.uploads);
const ROUNDS = Number(values.rounds);
const ADMIN = 'il_admin_bench-memory-0123456789abcdefghijklmnopqrs';

function corpus(): string | undefined {
  if (positionals[0]) return positionals[0];
  const script = fileURLToPath(new URL('../../shared/corpus/fetch.sh', import.meta.url));
  return existsSync(script) ? execFileSync('bash', [script], { encoding: 'utf8' }).trim() : undefined;
}

/** The largest photos of the corpus (drawn 16-megapixel JPEGs without one). */
async function largest(): Promise<Buffer[]> {
  const folder = corpus();
  const files = folder
    ? readdirSync(folder, { recursive: true, encoding: 'utf8' })
        .filter((f) => /\.(jpe?g|png)$/i.test(f))
        .map((f) => join(folder!, f))
    : [];
  if (files.length > 0)
    return files
      .sort((a, b) => statSync(b).size - statSync(a).size)
      .slice(0, 10)
      .map((f) => readFileSync(f));
  return Promise.all(
    Array.from({ length: 4 }, (_, i) =>
      sharp({
        create: {
          width: 4928,
          height: 3264,
          channels: 3,
          background: { r: 40 * i, g: 120, b: 200 },
        },
      })
        .jpeg({ quality: 95 })
        .toBuffer(),
    ),
  );
}

/** Resident bytes of a process and all its descendants, from /proc. */
function treeRss(root: number): number {
  return rssOf(processTree(root));
}

const photos = await largest();
const dataDir = await mkdtemp(join(tmpdir(), 'imagelake-bench-memory-'));
const { child, url } = await startServe(dataDir, ADMIN);
let peak = 0;
let peakPss = 0;
const sampler = setInterval(() => {
  const tree = processTree(child.pid!);
  peak = Math.max(peak, rssOf(tree));
  peakPss = Math.max(peakPss, pssOf(tree));
}, 100);

try {
  // Five customers: 50 uploads of one customer would pass its limit of uploads in progress (16).
  const customers: string[] = [];
  for (let c = 0; c < 5; c++) {
    const created = (await (
      await fetch(`${url}/v1/customers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `memory ${c}` }),
      })
    ).json()) as { apiKey: string };
    customers.push(created.apiKey);
  }
  // Idle: the server up and warm, nothing in flight.
  await new Promise((r) => setTimeout(r, 2000));
  const idle = treeRss(child.pid!);
  const mb = photos.map((p) => (p.length / 1e6).toFixed(1)).join(', ');
  console.log(`${UPLOADS} concurrent uploads x ${ROUNDS} rounds of the largest photos (${mb} MB)`);
  console.log(`idle server tree: ${(idle / 1e6).toFixed(0)} MB resident`);

  const answers = new Map<string, number>();
  const ids: Array<[string, string]> = [];
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(
      Array.from({ length: UPLOADS }, async (_, i) => {
        const body = Buffer.concat([photos[i % photos.length]!, Buffer.from(`#${round}-${i}`)]);
        const response = await fetch(`${url}/v1/images`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${customers[i % 5]}`,
            'content-type': 'application/octet-stream',
          },
          body: new Uint8Array(body),
        });
        const answer = (await response.json()) as { id?: string; error?: { code: string } };
        const key = `${response.status}${answer.error ? ` ${answer.error.code}` : ''}`;
        answers.set(key, (answers.get(key) ?? 0) + 1);
        if (answer.id) ids.push([customers[i % 5]!, answer.id]);
      }),
    );
  }
  // Until every accepted image is processed (or failed).
  for (const [key, id] of ids) {
    for (;;) {
      const image = (await (
        await fetch(`${url}/v1/images/${id}`, { headers: { authorization: `Bearer ${key}` } })
      ).json()) as { status: string };
      if (image.status === 'processed' || image.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  console.log(`answers: ${[...answers].map(([k, n]) => `${k} x${n}`).join(', ')}`);
  console.log(`peak server tree: ${(peak / 1e6).toFixed(0)} MB resident (aim: under 1500 MB)`);
  console.log(
    `peak server tree, proportional (Pss, shared memory counted once): ${(peakPss / 1e6).toFixed(0)} MB`,
  );
  console.log(`ratio peak / idle: ${(peak / idle).toFixed(2)}`);
} finally {
  clearInterval(sampler);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await rm(dataDir, { recursive: true, force: true });
}
