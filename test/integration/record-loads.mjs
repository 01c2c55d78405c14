// Preloaded with `--import` by lazy-imports.test.ts: appends the URL of every module the process
// loads (imported or required, on every thread that runs it) to the file IMAGELAKE_TEST_LOADS names,
// one per line, as it loads: a pipeline thread is ended without an exit event to write them at.
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const file = process.env.IMAGELAKE_TEST_LOADS;
const thread = isMainThread ? 'main' : 'worker';
registerHooks({
  load(url, context, next) {
    appendFileSync(file, `${thread} ${url}\n`);
    return next(url, context);
  },
});
