import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/**
 * A real webhook receiver (node:http) on 127.0.0.1: records every request, and answers as `answer`
 * says (200 by default). It can be stopped and started again on the same port, as a customer's
 * server goes down and comes back.
 */
export class Receiver {
  readonly received: Received[] = [];
  answer: (request: Received, response: ServerResponse) => void = (_, response) => response.end('ok');
  private server: Server | undefined;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async start(port = this.port): Promise<this> {
    this.server = createServer((request, response) => {
      let body = '';
      request.setEncoding('utf8');
      request.on('data', (chunk) => {
        body += chunk;
      });
      request.on('end', () => {
        const entry = { headers: request.headers, body, at: Date.now() };
        this.received.push(entry);
        this.answer(entry, response);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  /** Requests of one event type, in arrival order. */
  of(type: string): Received[] {
    return this.received.filter((r) => JSON.parse(r.body).type === type);
  }
}
