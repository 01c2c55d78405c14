// A webhook receiver for trying imagelake's webhooks locally: verifies each event with the
// standardwebhooks package (any Standard Webhooks library does the same), answers 2xx only for a
// verified one, skips a webhook-id seen before (deliveries are at least once), and prints a line
// per event.
//
//   WEBHOOK_SECRET=whsec_... node_modules/.bin/node examples/webhooks/receiver.ts [PORT]   (default 4000)
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

const secret = process.env.WEBHOOK_SECRET;
if (!secret?.startsWith('whsec_')) {
  console.error('Set WEBHOOK_SECRET to the secret POST /v1/webhooks answered (whsec_...).');
  process.exit(2);
}
const webhook = new Webhook(secret);
const port = Number(process.argv[2] ?? 4000);
const seen = new Set<string>();

createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    let event: { type: string; timestamp: string; data: { id?: string; status?: string } };
    try {
      event = webhook.verify(body, request.headers as Record<string, string>) as typeof event;
    } catch (error) {
      console.log(`refused: ${(error as Error).message}`);
      response.writeHead(400).end();
      return;
    }
    const id = String(request.headers['webhook-id']);
    if (seen.has(id)) console.log(`${id} again (already handled)`);
    else {
      seen.add(id);
      const about = [event.type, event.data.id, event.data.status].filter(Boolean).join(' ');
      console.log(`verified ${about} (webhook-id ${id})`);
    }
    response.writeHead(204).end();
  });
}).listen(port, '127.0.0.1', () => console.log(`receiving on http://127.0.0.1:${port}/`));
