import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { freePort, isFree } from '../../src/free-port.ts';

describe('a free port', () => {
  it('is one nothing listens on, under the range the system hands to outgoing connections', async () => {
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      assert.ok(port >= 20000 && port < 32768, `${port} is under 32768`);
      const server = createServer();
      // Bound at once, as a server given the port binds it.
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
      assert.equal(await isFree(port), false, 'a port something listens on is not free');
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
