import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { jpeg, png, pngBomb, webp } from '../fixtures/images.ts';
import { ADMIN, api, cli, startTestServer, type TestServer } from './harness.ts';

let t: TestServer;
let folder: string;
before(async () => {
  t = await startTestServer();
  folder = await mkdtemp(join(tmpdir(), 'imagelake-cli-'));
  await mkdir(join(folder, 'nested'));
  await writeFile(join(folder, 'a.jpg'), await jpeg({ seed: 1 }));
  await writeFile(join(folder, 'nested', 'b.png'), await png());
  await writeFile(join(folder, 'nested', 'c.webp'), await webp());
  await writeFile(join(folder, 'notes.txt'), 'not an image');
  await writeFile(join(folder, '.hidden.jpg'), await jpeg({ seed: 2 }));
});
after(async () => {
  await t.stop();
  await rm(folder, { recursive: true, force: true });
});

describe('imagelake CLI', () => {
  let apiKey = '';

  it('retention audit refuses a missing catalog, and creates none', async () => {
    const elsewhere = join(folder, 'not-the-data-dir');
    const { code, out } = await cli(['retention', 'audit'], {
      IMAGELAKE_DATA_DIR: elsewhere,
      IMAGELAKE_URL: t.url,
    });
    assert.equal(code, 2, out);
    assert.match(out, /CATALOG_MISSING: No catalog in .*not-the-data-dir.*IMAGELAKE_DATA_DIR/);
    assert.equal(existsSync(elsewhere), false, 'no catalog, no folder was made');
    const other = await cli(['retention', 'verify-receipts'], { IMAGELAKE_DATA_DIR: elsewhere });
    assert.equal(other.code, 2, other.out);
    assert.match(other.out, /CATALOG_MISSING/);
  });

  it('retention audit refuses an empty catalog unless --allow-empty', async () => {
    // The test server's settings: its data dir, and the lake folder in it.
    const env = { IMAGELAKE_DATA_DIR: t.dataDir, IMAGELAKE_LAKE_URL: '' };
    const refused = await cli(['retention', 'audit'], env);
    assert.equal(refused.code, 2, refused.out);
    assert.match(refused.out, /CATALOG_EMPTY: .*no customers.*--allow-empty/);
    assert.doesNotMatch(refused.out, /clean/);
    const allowed = await cli(['retention', 'audit', '--allow-empty'], env);
    assert.equal(allowed.code, 0, allowed.out);
    assert.match(allowed.out, /0 catalog rows, \d+ lake objects scanned/);
    assert.match(allowed.out, /clean/);
  });

  it('customers create prints the id and the key', async () => {
    const { code, out } = await cli(['customers', 'create', 'Initech', '--url', t.url, '--token', ADMIN]);
    assert.equal(code, 0, out);
    apiKey = /api key: (il_live_\S+)/.exec(out)?.[1] ?? '';
    assert.ok(apiKey, out);
  });

  it('upload walks folders, summarizes accepted, duplicate and rejected, and waits for processing', async () => {
    const first = await cli(['upload', '--customer', apiKey, '--url', t.url, '--wait', folder]);
    assert.equal(first.code, 1, `a rejected file makes the exit code non-zero:\n${first.out}`);
    assert.match(first.out, /4 files, .* 3 accepted, 0 duplicate, 1 rejected, 0 failed/);
    assert.match(first.out, /rejected .*notes\.txt: UNSUPPORTED_FORMAT/);
    assert.match(first.out, /3 processed, 0 failed/);

    const again = await cli([
      'upload',
      '--customer',
      apiKey,
      '--url',
      t.url,
      join(folder, 'a.jpg'),
      join(folder, 'nested'),
    ]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /3 files, .* 0 accepted, 3 duplicate, 0 rejected, 0 failed/);
    const listed = (await api(t.url, apiKey, 'GET', '/v1/images')).body.images;
    assert.equal(listed.length, 3);
    assert.deepEqual(listed.map((i: { filename: string }) => i.filename).sort(), [
      'a.jpg',
      'b.png',
      'c.webp',
    ]);
  });

  it('retention audit refuses an empty lake: the catalog of one platform, the lake of none', async () => {
    const emptyLake = join(folder, 'empty-lake');
    await mkdir(emptyLake);
    const env = { IMAGELAKE_DATA_DIR: t.dataDir, IMAGELAKE_LAKE_URL: `file://${emptyLake}` };
    const refused = await cli(['retention', 'audit'], env);
    assert.equal(refused.code, 2, refused.out);
    assert.match(refused.out, /LAKE_EMPTY: The lake .*empty-lake holds no objects.*IMAGELAKE_LAKE_URL/);
    const same = await cli(['retention', 'audit'], { IMAGELAKE_DATA_DIR: t.dataDir, IMAGELAKE_LAKE_URL: '' });
    assert.equal(same.code, 0, same.out);
    assert.match(same.out, /[1-9]\d* catalog rows, [1-9]\d* lake objects scanned/);
  });

  it('upload --wait names the file of an image that failed processing', async () => {
    const bombs = join(folder, 'bombs');
    await mkdir(bombs);
    await writeFile(join(bombs, 'huge.png'), pngBomb());
    const { code, out } = await cli(['upload', '--customer', apiKey, '--url', t.url, '--wait', bombs]);
    assert.equal(code, 1, `a failed image makes the exit code non-zero:\n${out}`);
    assert.match(out, /0 processed, 1 failed/);
    assert.match(out, /failed \S*bombs\/huge\.png \(image [0-9a-f-]{36}\): TOO_MANY_PIXELS/);
  });

  it('stats prints a readable table, and --json or --csv for programs', async () => {
    const args = ['stats', '--group-by', 'format', '--url', t.url, '--token', ADMIN];
    const rows = (await api(t.url, ADMIN, 'GET', '/v1/stats?groupBy=format')).body.rows as Array<{
      format: string;
      images: number;
      bytes: number;
    }>;
    const json = await cli([...args, '--json']);
    assert.equal(json.code, 0, json.out);
    assert.deepEqual(JSON.parse(json.out), rows);

    assert.ok(rows.length >= 3);

    const table = await cli(args);
    assert.equal(table.code, 0, table.out);
    const lines = table.out.trim().split('\n');
    assert.match(lines[0]!, /^format\s+images\s+bytes$/);
    assert.match(lines[1]!, /^-+\s+-+\s+-+$/);
    assert.doesNotMatch(table.out, /\(index\)|'/);
    for (const row of rows) {
      const mb =
        row.bytes >= 1e6 ? `${(row.bytes / 1e6).toFixed(1)} MB` : `${(row.bytes / 1e3).toFixed(1)} kB`;
      assert.ok(
        lines.some((l) => l.split(/\s{2,}/).join('|') === `${row.format}|${row.images}|${mb}`),
        `${JSON.stringify(row)} in\n${table.out}`,
      );
    }

    const csv = await cli([...args, '--csv']);
    assert.equal(csv.code, 0, csv.out);
    assert.deepEqual(csv.out.trim().split('\r\n'), [
      'format,images,bytes',
      ...rows.map((r) => `${r.format},${r.images},${r.bytes}`),
    ]);
  });

  it('usage prints usage for billing per customer per day, and queue the queue', async () => {
    const rows = (await api(t.url, ADMIN, 'GET', '/v1/usage')).body.rows as Array<{
      day: string;
      customerId: string;
      imagesReceived: number;
    }>;
    assert.ok(rows.length >= 1);
    const json = await cli(['usage', '--json', '--url', t.url, '--token', ADMIN]);
    assert.equal(json.code, 0, json.out);
    assert.deepEqual(JSON.parse(json.out), rows);
    const one = rows[0]!;
    const csv = await cli(['usage', '--csv', '--customer', one.customerId, '--url', t.url, '--token', ADMIN]);
    assert.equal(csv.code, 0, csv.out);
    const [header, ...lines] = csv.out.trim().split('\r\n');
    assert.match(header!, /^day,customerId,imagesReceived,/);
    assert.ok(lines.length >= 1 && lines.every((l) => l.split(',')[1] === one.customerId), csv.out);
    const table = await cli(['usage', '--url', t.url, '--token', ADMIN]);
    assert.equal(table.code, 0, table.out);
    assert.match(table.out, /^day\s+customerId\s+imagesReceived/);

    const queue = await cli(['queue', '--url', t.url, '--token', ADMIN]);
    assert.equal(queue.code, 0, queue.out);
    assert.match(queue.out, /^priority\s+waiting\s+inFlight\s+oldestWaitSeconds/);
    assert.match(queue.out, /^interactive\s+\d+/m);
    assert.match(queue.out, /^bulk\s+\d+/m);
  });

  it('every command answers --help', async () => {
    for (const command of [
      'serve',
      'customers',
      'keys',
      'upload',
      'stats',
      'usage',
      'queue',
      'kafka',
      'retention',
      'processors',
      'reprocess',
      'webhooks',
    ]) {
      const { code, out } = await cli([command, '--help']);
      assert.equal(code, 0, `${command}: ${out}`);
      assert.match(out, new RegExp(`^Usage: imagelake ${command}`), out);
      assert.match(out, new RegExp(`^ {2}${command}\\b`, 'm'), out);
    }
    const sub = await cli(['processors', 'test', '--help']);
    assert.equal(sub.code, 0, sub.out);
    assert.match(sub.out, /processors test PATH IMAGE/);
  });

  it('webhooks lists, registers (refusing a loopback address) and shows the delivery log', async () => {
    const args = ['--url', t.url, '--token', ADMIN];
    const customerId = (await api(t.url, ADMIN, 'POST', '/v1/customers', { name: 'Hooked' })).body.id;
    const empty = await cli(['webhooks', 'list', ...args]);
    assert.equal(empty.code, 0, empty.out);
    assert.match(empty.out, /No webhook endpoints/);
    const refused = await cli([
      'webhooks',
      'create',
      'https://127.0.0.1/hook',
      '--customer-id',
      customerId,
      ...args,
    ]);
    assert.equal(refused.code, 1, refused.out);
    assert.match(refused.out, /WEBHOOK_URL_FORBIDDEN: .*127\.0\.0\.1 is a loopback, private/);
    const missing = await cli(['webhooks', 'deliveries', '00000000-0000-4000-8000-000000000000', ...args]);
    assert.equal(missing.code, 1, missing.out);
    assert.match(missing.out, /NOT_FOUND/);
    const usage = await cli(['webhooks', 'create', 'https://example.com/hook', ...args]);
    assert.equal(usage.code, 2, usage.out);
    assert.match(usage.out, /usage: imagelake webhooks list/);
  });

  it('reprocess asks the server at --url, and creates no catalog', async () => {
    const dataDir = join(folder, 'no-catalog-here');
    const { code, out } = await cli(
      ['reprocess', '--processor', 'quality', '--url', t.url, '--token', ADMIN],
      {
        IMAGELAKE_DATA_DIR: dataDir,
      },
    );
    assert.equal(code, 1, out);
    assert.match(out, /PROCESSOR_UNKNOWN: .*No processor "quality"; configured: none/);
    const down = await cli(['reprocess', '--status'], {
      IMAGELAKE_URL: 'http://127.0.0.1:9',
      IMAGELAKE_ADMIN_TOKEN: ADMIN,
      IMAGELAKE_DATA_DIR: dataDir,
    });
    assert.equal(down.code, 1, down.out);
    assert.match(down.out, /Cannot reach imagelake at http:\/\/127\.0\.0\.1:9/);
    assert.equal(existsSync(dataDir), false);
  });

  it('processors test runs a .py with the interpreter the processors file gives it', async () => {
    const dir = join(folder, 'py');
    await mkdir(dir);
    const fixture = fileURLToPath(new URL('../fixtures/processors/command.ts', import.meta.url));
    // The "interpreter" notes that it ran, then speaks the protocol through the Node fixture.
    await writeFile(
      join(dir, 'venv-python'),
      `#!/bin/sh\necho "$@" > "${join(dir, 'ran')}"\nexec "${process.execPath}" "${fixture}" greyness 1.0.0\n`,
      { mode: 0o755 },
    );
    await writeFile(join(dir, 'greyness.py'), '# run by venv-python\n');
    await writeFile(
      join(dir, 'processors.json'),
      JSON.stringify({ processors: [{ name: 'greyness', command: ['./venv-python', 'greyness.py'] }] }),
    );
    await writeFile(join(dir, 'photo.jpg'), await jpeg({ seed: 9 }));
    const { code, out } = await cli(
      ['processors', 'test', join(dir, 'greyness.py'), join(dir, 'photo.jpg')],
      {
        IMAGELAKE_PROCESSORS_FILE: join(dir, 'processors.json'),
        IMAGELAKE_PROCESSOR_PYTHON: '',
        VIRTUAL_ENV: '',
      },
    );
    assert.equal(code, 0, out);
    assert.match(out, /"ok": true/);
    assert.match((await readFile(join(dir, 'ran'), 'utf8')).trim(), /\/py\/greyness\.py$/);
  });

  it('kafka produce refuses to write claim checks into an empty lake', async () => {
    const dataDir = join(folder, 'no-lake-here');
    const { code, out } = await cli(
      [
        'kafka',
        'produce',
        '--customer',
        'c',
        '--brokers',
        '127.0.0.1:9',
        '--claim-check-over',
        '0',
        join(folder, 'a.jpg'),
      ],
      { IMAGELAKE_DATA_DIR: dataDir, IMAGELAKE_LAKE_URL: '' },
    );
    assert.equal(code, 2, out);
    assert.match(out, /LAKE_EMPTY: The lake .*no-lake-here.* holds no objects/);
    assert.equal(existsSync(dataDir), false);
  });

  it('says what to do when the server is not there', async () => {
    const { code, out } = await cli(['customers', 'list', '--url', 'http://127.0.0.1:9', '--token', ADMIN]);
    assert.equal(code, 1);
    assert.match(out, /Cannot reach imagelake at http:\/\/127\.0\.0\.1:9.*Is it running\?/);
  });

  it('says what is missing', async () => {
    const { code, out } = await cli(['upload', folder], { IMAGELAKE_API_KEY: '' });
    assert.equal(code, 2);
    assert.match(out, /needs the customer API key/);
  });
});
