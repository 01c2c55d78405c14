// The expired backlog bench/purge.ts purges: what the real writers leave behind for each processed
// image, made set-based (one SQL statement per table) and with parallel object writes.
//
// Per image, as landing and the outcome transaction leave it once the job is done (the job row is
// deleted by queue.finish, the outbox row by the publisher, so neither remains):
// - catalog: an `images` row (processed, with its renditions and metadata), its `analytics.facts`
//   row, its `image_hashes` row (the similarity index); for the customers with a webhook endpoint,
//   the delivered image.received and image.processed deliveries;
// - lake (src/lake/object-keys.ts): the raw original `raw/dt=DAY/customer=ID/<id>.png`, the sidecar
//   `metadata/…/<id>.json`, the renditions `renditions/…/<id>/thumb.webp` and `preview.webp`.
// Objects are a few bytes each: the purge's cost is per object and per row, not per byte.
// The rollups are not generated: they hold no image data and outlive the images (statistics window).
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sql } from 'kysely';
import type { Db } from '../src/catalog/database.ts';
import { metadataKey, rawKey, renditionKey } from '../src/lake/object-keys.ts';
import type { Lake } from '../src/lake/port.ts';

export interface Backlog {
  images: number;
  customers: string[];
  /** The first image's landing time (ms); each next one lands `stepMs` later. */
  startMs: number;
  stepMs: number;
}

/** Image number i's id: deterministic, so SQL and the object writer agree without reading back. */
export function imageId(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

export function imageParts(backlog: Backlog, i: number) {
  return {
    imageId: imageId(i),
    customerId: backlog.customers[i % backlog.customers.length]!,
    receivedAt: new Date(backlog.startMs + i * backlog.stepMs),
  };
}

/** The four objects of image i. */
export function objectKeys(backlog: Backlog, i: number): string[] {
  const parts = imageParts(backlog, i);
  return [
    rawKey(parts, 'png'),
    metadataKey(parts),
    renditionKey(parts, 'thumb', 'webp'),
    renditionKey(parts, 'preview', 'webp'),
  ];
}
export const OBJECTS_PER_IMAGE = 4;

/** `count` customers; every other one has a webhook endpoint subscribed to every image event. */
export async function seedCustomers(db: Db, count: number): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    insert into customers (id, name) select gen_random_uuid(), 'bench customer ' || n
    from generate_series(1, ${count}) n returning id`.execute(db);
  const ids = rows.map((r) => r.id);
  for (const [n, id] of ids.entries()) {
    if (n % 2 === 1) continue;
    await sql`insert into webhook_endpoints (id, customer_id, url, events, secret)
      values (gen_random_uuid(), ${id}, 'https://hooks.example.com/imagelake',
        array['image.received','image.processed','image.failed','image.expired','image.erased'],
        'whsec_' || md5(random()::text))`.execute(db);
  }
  return ids;
}

/** The catalog rows of images first..first+count-1 (see the header for which). */
export async function insertCatalogRows(
  db: Db,
  backlog: Backlog,
  first: number,
  count: number,
): Promise<void> {
  const customers = backlog.customers;
  const params = sql`
    select n, ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid as id,
      (${customers}::uuid[])[1 + n % ${customers.length}] as customer_id,
      ${new Date(backlog.startMs)}::timestamptz + (n::bigint * ${backlog.stepMs}) * interval '1 millisecond' as received_at
    from generate_series(${first}::bigint, ${first + count - 1}::bigint) n`;
  await sql`
    insert into images (id, customer_id, source, status, checksum, bytes, format, raw_key, received_at,
      processed_at, width, height, metadata, renditions, phash, processors, queue_ms, processing_ms)
    select g.id, g.customer_id, 'http', 'processed', encode(sha256(g.id::text::bytea), 'hex'), 16, 'png',
      'raw/dt=' || to_char(g.received_at at time zone 'UTC', 'YYYY-MM-DD') || '/customer=' || g.customer_id || '/' || g.id || '.png',
      g.received_at, g.received_at + interval '40 milliseconds', 64, 64,
      '{"format":"png","width":64,"height":64,"space":"srgb","channels":3,"hasAlpha":false}',
      jsonb_build_array(
        jsonb_build_object('name', 'thumb', 'format', 'webp', 'width', 64, 'height', 64, 'bytes', 16,
          'key', 'renditions/dt=' || to_char(g.received_at at time zone 'UTC', 'YYYY-MM-DD') || '/customer=' || g.customer_id || '/' || g.id || '/thumb.webp'),
        jsonb_build_object('name', 'preview', 'format', 'webp', 'width', 64, 'height', 64, 'bytes', 16,
          'key', 'renditions/dt=' || to_char(g.received_at at time zone 'UTC', 'YYYY-MM-DD') || '/customer=' || g.customer_id || '/' || g.id || '/preview.webp')),
      lpad(to_hex(g.n), 16, '0'), '{}', 5, 30
    from (${params}) g`.execute(db);
  await sql`
    insert into analytics.facts (image_id, customer_id, source, format, outcome, error_code, bytes, width, height,
      megapixels, received_at, processed_at, day, queue_ms, processing_ms, processors, dimensions, labels, processor_runs)
    select g.id, g.customer_id, 'http', 'png', 'processed', null, 16, 64, 64, 0.004096, g.received_at,
      g.received_at + interval '40 milliseconds', (g.received_at at time zone 'UTC')::date, 5, 30, '{}', '{}', '{}', '[]'
    from (${params}) g`.execute(db);
  await sql`
    insert into image_hashes (image_id, customer_id, sha256, phash, b0, b1, b2, b3, landed_at)
    select g.id, g.customer_id, encode(sha256(g.id::text::bytea), 'hex'), g.n, g.n % 65536, (g.n / 7) % 65536,
      (g.n / 13) % 65536, (g.n / 17) % 65536, g.received_at
    from (${params}) g`.execute(db);
  await sql`
    insert into webhook_deliveries (id, endpoint_id, customer_id, image_id, event_type, payload, status, attempts,
      next_attempt_at, created_at, delivered_at, last_status)
    select gen_random_uuid(), e.id, g.customer_id, g.id, t.type,
      '{"type":"' || t.type || '","data":{"id":"' || g.id || '"}}', 'delivered', 1, null, g.received_at,
      g.received_at + interval '1 second', 200
    from (${params}) g join webhook_endpoints e on e.customer_id = g.customer_id
      cross join (values ('image.received'), ('image.processed')) t(type)`.execute(db);
}

/** Runs `work` on 0..count-1 with at most `concurrency` at a time. */
export async function eachIndex(
  count: number,
  concurrency: number,
  work: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

const BODY = Buffer.from('imagelake bench\n');

/** Runs `work` on each object key of images first..first+count-1, `concurrency` images at a time. */
async function eachObject(
  backlog: Backlog,
  range: Range,
  work: (key: string) => Promise<unknown>,
): Promise<void> {
  await eachIndex(range.count, range.concurrency, async (n) => {
    for (const key of objectKeys(backlog, range.first + n)) await work(key);
  });
}

type Range = { first: number; count: number; concurrency: number };

/** Writes the objects into a folder lake at `root`, straight to files. */
export async function writeFolderObjects(root: string, backlog: Backlog, range: Range): Promise<void> {
  const made = new Set<string>();
  await eachObject(backlog, range, async (key) => {
    const path = join(root, key);
    const dir = dirname(path);
    if (!made.has(dir)) {
      await mkdir(dir, { recursive: true });
      made.add(dir);
    }
    await writeFile(path, BODY);
  });
}

/** Writes the objects through a lake (the S3 one). */
export async function writeLakeObjects(lake: Lake, backlog: Backlog, range: Range): Promise<void> {
  await eachObject(backlog, range, (key) => lake.put(key, BODY, { durable: false }));
}

/**
 * The baseline for the folder lake: the same files removed by a bare loop of unlink, the least a
 * file's removal costs (fs.rm would add an lstat to each). Folders are left: the purge prunes them.
 */
export async function bareFolderDelete(root: string, backlog: Backlog, range: Range): Promise<void> {
  await eachObject(backlog, range, (key) => unlink(join(root, key)));
}
