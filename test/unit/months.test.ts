import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wholeMonths } from '../../src/analytics/summary.ts';

describe('whole months inside a date range', () => {
  it('finds the calendar months entirely inside', () => {
    assert.deepEqual(wholeMonths('2026-01-15', '2026-04-10'), {
      fullFrom: '2026-02-01',
      fullTo: '2026-04-01',
    });
    assert.deepEqual(wholeMonths('2026-02-01', '2026-02-28'), {
      fullFrom: '2026-02-01',
      fullTo: '2026-03-01',
    });
    assert.deepEqual(wholeMonths('2025-12-01', '2026-01-31'), {
      fullFrom: '2025-12-01',
      fullTo: '2026-02-01',
    });
  });

  it('is empty when no month fits', () => {
    const { fullFrom, fullTo } = wholeMonths('2026-03-05', '2026-03-20');
    assert.ok(fullFrom >= fullTo);
    const edge = wholeMonths('2026-03-02', '2026-04-01');
    assert.ok(edge.fullFrom >= edge.fullTo);
  });
});
