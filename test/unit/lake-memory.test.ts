import { MemoryLake } from '../fakes/memory-lake.ts';
import { lakeContract } from '../lake/contract.ts';

// The fake used by unit tests is held to the same contract as the real adapters.
lakeContract('memory (test fake)', async () => new MemoryLake());
