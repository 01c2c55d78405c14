import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatBytes, formatTable, toCsv } from '../../src/cli/table.ts';

describe('the CLI tables', () => {
  it('shows bytes in decimal units, with the unit right', () => {
    assert.equal(formatBytes(165_932_581), '165.9 MB');
    assert.equal(formatBytes(999), '999 B');
    assert.equal(formatBytes(1_500), '1.5 kB');
    assert.equal(formatBytes(2_000_000_000), '2.0 GB');
  });

  it('puts the groups first, pads columns and right-aligns numbers', () => {
    const table = formatTable(
      [
        { images: 12, bytes: 165_932_581, format: 'jpeg' },
        { images: 3, bytes: 1_500, format: 'png' },
      ],
      ['format'],
    );
    assert.equal(
      table,
      [
        'format  images     bytes',
        '------  ------  --------',
        'jpeg        12  165.9 MB',
        'png          3    1.5 kB',
      ].join('\n'),
    );
  });

  it('writes CSV with exact numbers, quoting what needs it', () => {
    assert.equal(
      toCsv([
        { customerName: 'Acme, "Inc"', bytes: 165_932_581 },
        { customerName: null, bytes: 0 },
      ]),
      'customerName,bytes\r\n"Acme, ""Inc""",165932581\r\n,0\r\n',
    );
  });
});
