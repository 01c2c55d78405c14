import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_RANGE_DAYS, dayRange } from '../../src/analytics/range.ts';

const now = new Date('2026-03-10T15:00:00Z');

describe('the default range of the statistics and analytics routes', () => {
  it('is the last 30 days including today', () => {
    assert.equal(DEFAULT_RANGE_DAYS, 30);
    assert.deepEqual(dayRange({}, now), { from: '2026-02-09', to: '2026-03-10' });
  });

  it('ends at a given "to" and starts at a given "from"', () => {
    assert.deepEqual(dayRange({ to: '2026-01-31' }, now), { from: '2026-01-02', to: '2026-01-31' });
    assert.deepEqual(dayRange({ from: '2026-03-01' }, now), { from: '2026-03-01', to: '2026-03-10' });
  });

  it('keeps a backwards range as asked: it holds no day', () => {
    assert.deepEqual(dayRange({ from: '2026-03-02', to: '2026-03-01' }, now), {
      from: '2026-03-02',
      to: '2026-03-01',
    });
  });
});
