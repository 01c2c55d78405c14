import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, settled, startTestServer, type TestServer, upload } from './harness.ts';

const command = fileURLToPath(new URL('../fixtures/processors/command.ts', import.meta.url));

describe("a processor's errors, end to end", () => {
  let t: TestServer;
  let dir: string;
  let seenFile: string;
  let customer: { id: string; apiKey: string };
  const seen = async (id: string) =>
    (await readFile(seenFile, 'utf8').catch(() => '')).split('\n').filter((l) => l.startsWith(`${id} `))
      .length;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagelake-processor-errors-'));
    seenFile = join(dir, 'seen.txt');
    // Neither entry names a version or fields: the processors declare them.
    const entry = (name: string, mode: string, width: number) => ({
      name,
      command: [process.execPath, command, name, '1.0.0'],
      env: { SEEN_FILE: seenFile },
      config: { mode, width },
    });
    await writeFile(
      join(dir, 'processors.json'),
      JSON.stringify({ processors: [entry('cmd', 'throw', 333), entry('flaky', 'retryable', 334)] }),
    );
    t = await startTestServer({
      IMAGELAKE_PROCESSORS_FILE: join(dir, 'processors.json'),
      IMAGELAKE_JOB_ATTEMPTS: '3',
    });
    customer = await createCustomer(t.url, 'Colourful');
  });
  after(async () => {
    await t?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('GET /v1/processors answers the version and fields the running processors declared', async () => {
    const { body } = await api(t.url, ADMIN, 'GET', '/v1/processors');
    const cmd = body.processors.find((p: { name: string }) => p.name === 'cmd');
    assert.equal(cmd.version, '1.0.0');
    assert.deepEqual(cmd.fields, { width: 'integer', seen: 'string', note: 'string?' });
    assert.ok(cmd.declaredAt);
  });

  it("a processor's own error fails the image at once, and its code is what the statistics record", async () => {
    const id = (await upload(t.url, customer.apiKey, await jpeg({ width: 333, height: 200 }))).body.id;
    const image = await settled(t.url, customer.apiKey, id);
    assert.equal(image.status, 'failed');
    assert.equal(image.error.code, 'PROCESSOR_FAILED');
    assert.match(image.error.message, /cmd@1\.0\.0: NO_FACES: no faces in this one/);
    assert.equal(await seen(id), 1, 'not retried: the same bytes fail the same way');

    const runs = await api(t.url, ADMIN, 'POST', '/v1/sql', {
      query: `select processor_runs->'cmd'->>'error' as error from analytics.facts where image_id = '${id}'`,
    });
    assert.deepEqual(runs.body.rows, [{ error: 'NO_FACES' }]);
    const stats = await api(t.url, ADMIN, 'GET', `/v1/analytics/processors?customerId=${customer.id}`);
    const cmd = stats.body.processors.find((p: { name: string }) => p.name === 'cmd');
    assert.deepEqual(cmd.errors, [{ code: 'NO_FACES', runs: 1 }]);
  });

  it('an error the processor calls retryable is tried again, up to IMAGELAKE_JOB_ATTEMPTS', async () => {
    const id = (await upload(t.url, customer.apiKey, await jpeg({ width: 334, height: 200 }))).body.id;
    const image = await settled(t.url, customer.apiKey, id);
    assert.equal(image.status, 'failed');
    assert.match(image.error.message, /flaky@1\.0\.0: MODEL_DOWN/);
    // Three attempts, each running cmd (fine on this width) and then flaky.
    assert.equal(await seen(id), 6);
    const runs = await api(t.url, ADMIN, 'POST', '/v1/sql', {
      query: `select processor_runs->'flaky'->>'error' as error from analytics.facts where image_id = '${id}'`,
    });
    assert.deepEqual(runs.body.rows, [{ error: 'MODEL_DOWN' }]);
  });
});
