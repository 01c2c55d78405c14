import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { hashKey, issueKey, revokeKey } from '../../src/catalog/api-keys.ts';
import { loadConfig } from '../../src/config/config.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { ADMIN, api } from './harness.ts';

// Restarts on the same data dir, so this file starts its servers itself.
let dataDir: string;
let server: RunningServer;

async function start(): Promise<RunningServer> {
  const config = loadConfig({
    IMAGELAKE_DATA_DIR: dataDir,
    IMAGELAKE_PORT: '0',
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
  });
  return startServer(config, { roles: ['api'], log: pino({ level: 'silent' }) });
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'imagelake-admin-'));
  server = await start();
});
after(async () => {
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

async function activeAdminKeys(url: string): Promise<Array<{ id: string; name: string }>> {
  const { body } = await api(url, ADMIN, 'GET', '/v1/keys?role=admin');
  return body.keys.filter((k: { revokedAt: string | null }) => !k.revokedAt);
}

describe('the admin key', () => {
  it('refuses to revoke the last active admin key with 409 LAST_ADMIN_KEY, and the key keeps working', async () => {
    const [only, ...others] = await activeAdminKeys(server.url!);
    assert.equal(others.length, 0);
    const refused = await api(server.url!, ADMIN, 'DELETE', `/v1/keys/${only!.id}`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'LAST_ADMIN_KEY');
    assert.match(refused.body.error.message, /IMAGELAKE_ADMIN_TOKEN/);
    assert.equal((await api(server.url!, ADMIN, 'GET', '/v1/customers')).status, 200);
  });

  it('revokes two admin keys at once only down to the last one', async () => {
    await issueKey(server.db, 'admin', { name: 'second admin' });
    const keys = await activeAdminKeys(server.url!);
    assert.equal(keys.length, 2);
    // Straight at the catalog, so both revocations race (over HTTP the first could unauthorize the second).
    const outcomes = await Promise.allSettled(keys.map((k) => revokeKey(server.db, k.id)));
    assert.deepEqual(outcomes.map((o) => o.status).sort(), ['fulfilled', 'rejected']);
    const failed = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    assert.equal(failed.reason.code, 'LAST_ADMIN_KEY');
    assert.equal(
      (
        await server.db
          .selectFrom('api_keys')
          .select('id')
          .where('role', '=', 'admin')
          .where('revoked_at', 'is', null)
          .execute()
      ).length,
      1,
    );
  });

  it('restores the configured IMAGELAKE_ADMIN_TOKEN at start when it had been revoked', async () => {
    const spare = await issueKey(server.db, 'admin', { name: 'spare admin' });
    const configured = await server.db
      .selectFrom('api_keys')
      .select(['id', 'revoked_at'])
      .where('hash', '=', hashKey(ADMIN))
      .executeTakeFirstOrThrow();
    // The race above may have revoked it already; otherwise revoke it now, with another admin left.
    if (!configured.revoked_at) {
      assert.equal((await api(server.url!, spare.key, 'DELETE', `/v1/keys/${configured.id}`)).status, 204);
    }
    assert.equal((await api(server.url!, ADMIN, 'GET', '/v1/customers')).status, 401);

    await server.stop();
    server = await start();
    assert.equal((await api(server.url!, ADMIN, 'GET', '/v1/customers')).status, 200);
  });
});
