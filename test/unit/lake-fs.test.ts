import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsLake } from '../../src/lake/fs.ts';
import { lakeContract } from '../lake/contract.ts';

lakeContract(
  'filesystem',
  async () => new FsLake(join(await mkdtemp(join(tmpdir(), 'imagelake-lake-')), 'lake')),
);
