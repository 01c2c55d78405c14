import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, settled, startTestServer, type TestServer, upload } from './harness.ts';

const FUZZ = fileURLToPath(new URL('../../scripts/fuzz/run', import.meta.url));
const BRIGHTNESS = fileURLToPath(new URL('../../examples/processors/brightness.ts', import.meta.url));
/** Operations scripts/fuzz/schemathesis.toml leaves out, each with its reason there. */
const EXCLUDED = 1;

let t: TestServer;
const keys: Record<string, string> = {};

before(async () => {
  // Embedded defaults, plus one processor so that POST /v1/reprocess has a name to accept.
  const file = join(process.env.TMPDIR ?? '/tmp', `imagelake-fuzz-${process.pid}.json`);
  await writeFile(file, JSON.stringify({ processors: [{ name: 'brightness', module: BRIGHTNESS }] }));
  t = await startTestServer({ IMAGELAKE_PROCESSORS_FILE: file });
  const customer = await createCustomer(t.url, 'Fuzz');
  keys.ADMIN = ADMIN;
  keys.CUSTOMER = customer.apiKey;
  keys.ANALYST = (await api(t.url, ADMIN, 'POST', '/v1/analyst-keys', { name: 'fuzz' })).body.apiKey;
  // One processed image, so the statistics and analytics the fuzzer asks for are not all empty.
  const landed = await upload(t.url, customer.apiKey, await jpeg());
  await settled(t.url, customer.apiKey, landed.body.id);
});
after(() => t?.stop());

/** scripts/fuzz/run, without blocking this process: the server under test runs in it. */
function fuzz(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [FUZZ, t.url], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('Schemathesis against the OpenAPI document', () => {
  it('finds no 5xx, no answer off the schema, no valid request refused, as admin, customer and analyst', async () => {
    const { code, output } = await fuzz({
      IMAGELAKE_FUZZ_ADMIN_KEY: keys.ADMIN!,
      IMAGELAKE_FUZZ_CUSTOMER_KEY: keys.CUSTOMER!,
      IMAGELAKE_FUZZ_ANALYST_KEY: keys.ANALYST!,
    });
    assert.equal(code, 0, output);
    // Three runs, each over every operation but the excluded ones, each case passing.
    const selected = [...output.matchAll(/Selected: (\d+)\/(\d+)/g)];
    assert.equal(selected.length, 3, output);
    for (const [, chosen, total] of selected) assert.equal(Number(total) - Number(chosen), EXCLUDED, output);
    const cases = [...output.matchAll(/(\d+) generated, (\d+) passed/g)];
    assert.equal(cases.length, 3, output);
    for (const [, generated, passed] of cases) {
      assert.equal(passed, generated, output);
      assert.ok(Number(generated) > 500, `a run of ${generated} cases is too small to trust:\n${output}`);
    }
  });
});
