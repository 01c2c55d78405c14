// The trivial processor as a service speaking the HTTP protocol (docs/processors.md): POST
// multipart/form-data with a `request` JSON part and an `image` part, answered with JSON.
//
//   node bench/processors/trivial-http.ts [PORT]     prints {"port": N} on stdout once listening
import { createServer } from 'node:http';
import { trivial } from './trivial.ts';

/** The parts of a multipart/form-data body by name: what a real service's framework would do. */
function parts(body: Buffer, contentType: string): Map<string, Buffer> {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  if (!boundary) throw new Error('no multipart boundary');
  const dash = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const out = new Map<string, Buffer>();
  let at = body.indexOf(dash);
  while (at >= 0) {
    const start = at + dash.length;
    if (body[start] === 0x2d && body[start + 1] === 0x2d) break; // the closing delimiter
    const headersEnd = body.indexOf('\r\n\r\n', start);
    const end = body.indexOf(dash, headersEnd);
    if (headersEnd < 0 || end < 0) throw new Error('malformed multipart body');
    const name = /name="([^"]*)"/.exec(body.subarray(start, headersEnd).toString('latin1'))?.[1];
    if (name && !out.has(name)) out.set(name, body.subarray(headersEnd + 4, end - 2));
    at = end;
  }
  return out;
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    let answer: unknown;
    try {
      const form = parts(Buffer.concat(chunks), req.headers['content-type'] ?? '');
      JSON.parse(form.get('request')!.toString('utf8'));
      answer = { ok: true, metadata: trivial(form.get('image')!) };
    } catch (error) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ ok: false, error: { code: 'BAD_REQUEST', message: (error as Error).message } }),
      );
      return;
    }
    const data = JSON.stringify(answer);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
    res.end(data);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' ? address?.port : 0 })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
