// The trivial processor as a command speaking the stdio protocol (docs/processors.md):
// hello, then for each request a JSON header frame and an image frame in, one JSON frame out.
import { FIELDS, NAME, trivial, VERSION } from './trivial.ts';

const chunks: Buffer[] = [];
let buffered = 0;
const frames: Buffer[] = [];
let wake: (() => void) | undefined;

function send(payload: string): void {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  process.stdout.write(Buffer.concat([head, body]));
}

// Chunks are joined only once a whole frame is in, so a 16 MB image costs one copy, not one per chunk.
process.stdin.on('data', (chunk: Buffer) => {
  chunks.push(chunk);
  buffered += chunk.length;
  for (;;) {
    if (buffered < 4) break;
    if (chunks[0]!.length < 4) chunks.splice(0, chunks.length, Buffer.concat(chunks));
    const length = chunks[0]!.readUInt32BE(0);
    if (buffered < 4 + length) break;
    const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    frames.push(all.subarray(4, 4 + length));
    const rest = all.subarray(4 + length);
    chunks.splice(0, chunks.length, ...(rest.length ? [rest] : []));
    buffered = rest.length;
  }
  if (frames.length) wake?.();
});
process.stdin.on('end', () => process.exit(0));

async function next(): Promise<Buffer> {
  while (frames.length === 0) await new Promise<void>((resolve) => (wake = resolve));
  return frames.shift()!;
}

send(JSON.stringify({ imagelake: 1, name: NAME, version: VERSION, fields: FIELDS }));
for (;;) {
  const header = JSON.parse((await next()).toString('utf8')) as { id: string };
  const image = await next();
  send(JSON.stringify({ id: header.id, ok: true, metadata: trivial(image) }));
}
