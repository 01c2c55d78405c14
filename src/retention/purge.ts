import type { Logger } from 'pino';
import type { Db } from '../catalog/database.ts';
import type { Clock } from '../clock.ts';
import { day, IMAGE_AREAS } from '../lake/keys.ts';
import type { Lake } from '../lake/port.ts';
import type { Metrics } from '../observability/metrics.ts';
import { deleteImageObjects } from './erase.ts';

export interface PurgeDeps {
  db: Db;
  lake: Lake;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  retentionMs: number;
  batchSize?: number;
}

export interface PurgeSummary {
  startedAt: Date;
  finishedAt: Date;
  cutoff: Date;
  images: number;
  objects: number;
  bytes: number;
}

/**
 * Deletes every image older than the retention window: its objects first, then its catalog row
 * (and with it, its job). In that order a crash leaves at worst a row whose objects are already
 * gone, which the next run deletes again, never an object nobody knows about. Daily aggregate
 * statistics hold no image data and are kept.
 */
export async function purgeExpired(deps: PurgeDeps): Promise<PurgeSummary> {
  const { db, lake, clock, log, metrics, retentionMs } = deps;
  const batchSize = deps.batchSize ?? 200;
  const startedAt = clock.now();
  const cutoff = new Date(startedAt.getTime() - retentionMs);
  let images = 0;
  let objects = 0;
  let bytes = 0;

  for (;;) {
    const batch = await db
      .selectFrom('images')
      .select(['id', 'customer_id', 'received_at', 'raw_key'])
      .where('received_at', '<', cutoff)
      .orderBy('received_at')
      .limit(batchSize)
      .execute();
    if (batch.length === 0) break;
    for (const image of batch) {
      const deleted = await deleteImageObjects(lake, image);
      objects += deleted.objects;
      bytes += deleted.bytes;
    }
    await db
      .deleteFrom('images')
      .where(
        'id',
        'in',
        batch.map((b) => b.id),
      )
      .execute();
    images += batch.length;
  }

  // Whole day partitions older than the window can hold only orphans (an object written by a landing
  // that crashed before its row was committed); nothing in them may stay.
  const oldestKeptDay = day(cutoff);
  for (const area of IMAGE_AREAS) {
    for (const child of await lake.children(`${area}/`)) {
      const partitionDay = /^dt=(\d{4}-\d{2}-\d{2})$/.exec(child)?.[1];
      if (!partitionDay || partitionDay >= oldestKeptDay) continue;
      for await (const object of lake.list(`${area}/${child}/`)) {
        await lake.delete(object.key);
        objects += 1;
        bytes += object.bytes;
      }
    }
  }

  const finishedAt = clock.now();
  await db
    .insertInto('purge_runs')
    .values({
      started_at: startedAt,
      finished_at: finishedAt,
      window_ms: retentionMs,
      images,
      objects,
      bytes,
    })
    .execute();
  metrics.purgedImages.inc(images);
  metrics.purgedObjects.inc(objects);
  metrics.purgeRuns.inc({ result: 'ok' });
  if (images || objects)
    log.info({ images, objects, bytes, cutoff }, 'retention purge deleted expired images');
  return { startedAt, finishedAt, cutoff, images, objects, bytes };
}

/** How far past its expiry the oldest image still present is, in seconds (0 when none is overdue). */
export async function purgeLagSeconds(db: Db, clock: Clock, retentionMs: number): Promise<number> {
  const oldest = await db
    .selectFrom('images')
    .select((eb) => eb.fn.min('received_at').as('oldest'))
    .executeTakeFirst();
  const at = oldest?.oldest ? new Date(oldest.oldest as Date).getTime() : undefined;
  if (at === undefined) return 0;
  return Math.max(0, (clock.now().getTime() - retentionMs - at) / 1000);
}
