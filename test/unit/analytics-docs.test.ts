import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { PARQUET } from '../../src/analytics/export.ts';

describe('docs/analytics.md', () => {
  it('lists every Parquet file the export writes', async () => {
    const docs = await readFile(new URL('../../docs/analytics.md', import.meta.url), 'utf8');
    const paths = Object.values(PARQUET).map((path) => path('YYYY-MM-DD'));
    assert.equal(paths.length, 5);
    for (const path of paths) assert.ok(docs.includes(path), `${path} is not in docs/analytics.md`);
  });
});
