// Preloaded with `--import` by lazy-imports.test.ts: records the URL of every module the process
// loads (imported or required, on every thread that runs it) and writes them, one per line, to the
// file IMAGELAKE_TEST_LOADS names when the thread ends.
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const loaded = new Set();
registerHooks({
  load(url, context, next) {
    loaded.add(url);
    return next(url, context);
  },
});
process.on('exit', () => appendFileSync(process.env.IMAGELAKE_TEST_LOADS, `${[...loaded].join('\n')}\n`));
