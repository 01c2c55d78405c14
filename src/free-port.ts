import { createServer } from 'node:net';

/**
 * Where a free port is looked for: under Linux's ephemeral range (32768-60999 by default). A port
 * found free there stays free until something binds it on purpose; one from the ephemeral range
 * (what listening on port 0 gives) can be handed to any outgoing connection of any process between
 * the check and the bind, and with many servers and clients starting at once (the integration
 * suite) that happens.
 */
const FROM = 20000;
const UNTIL = 32768;
const TRIES = 50;

/** A port free on `host` now, one under the ephemeral range when there is one (else any). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < TRIES; i++) {
    const port = FROM + Math.floor(Math.random() * (UNTIL - FROM));
    if (await isFree(port, host)) return port;
  }
  return anyPort(host);
}

/** Whether nothing listens on `port` (on `host`) now. */
export function isFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.on('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** A port the system picks (from the ephemeral range). */
function anyPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
