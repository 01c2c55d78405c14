// The trivial processor of bench/processors.ts: looks at nothing, answers {ok: true}. What it costs
// to run it is what the platform costs around a processor of this kind.
import type { ModuleProcessor } from '../../src/processing/processors/contract.ts';

export const NAME = 'trivial';
export const VERSION = '1.0.0';
export const FIELDS = { ok: 'boolean' };

/** The function itself, shared by the module, the command, the HTTP server and the direct baseline. */
export function trivial(_bytes: Uint8Array): { ok: boolean } {
  return { ok: true };
}

const processor: ModuleProcessor = {
  name: NAME,
  version: VERSION,
  fields: FIELDS,
  process: (image) => trivial(image.bytes),
};

export default processor;
