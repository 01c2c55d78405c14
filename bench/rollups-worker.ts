// One process of the rollups benchmark (bench/rollups.ts): records the outcomes of the jobs it is
// given, one after another, through the workers' own code (processing/outcome.ts recordFailed: the
// job finished, the image updated, its fact, its share of every rollup and of usage, the webhook
// check, in one transaction), from a "go" until a deadline or the last job.
import { connect } from '../src/catalog/database.ts';
import { getImage } from '../src/catalog/images.ts';
import type { ClaimedJob } from '../src/catalog/queue.ts';
import type { ImageRow } from '../src/catalog/schema.ts';
import { recordFailed } from '../src/processing/outcome.ts';

const { db } = connect(process.argv[2]!, { max: 2 });
let work: Array<{ job: ClaimedJob; image: ImageRow }> = [];

process.on('message', async (message: { jobs?: ClaimedJob[]; go?: number }) => {
  if (message.jobs) {
    work = [];
    for (const job of message.jobs)
      work.push({
        job: { ...job, createdAt: new Date(job.createdAt) },
        image: (await getImage(db, job.imageId))!,
      });
    process.send!({ ready: true });
    return;
  }
  if (message.go) {
    const deadline = Date.now() + message.go;
    const started = performance.now();
    let done = 0;
    for (const { job, image } of work) {
      if (Date.now() >= deadline) break;
      const at = new Date();
      const write = await recordFailed(
        db,
        job,
        image,
        { code: 'CORRUPT_IMAGE', message: 'benchmark' },
        { processedAt: at, queueMs: 1, processingMs: 1 },
        { retentionMs: 7 * 86_400_000 },
      );
      if (write !== 'recorded') throw new Error(`outcome not recorded: ${write}`);
      done++;
    }
    process.send!({ done, ms: performance.now() - started });
    return;
  }
  await db.destroy();
  process.exit(0);
});
