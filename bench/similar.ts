// The similarity index at scale: one customer with 10,000,000 perceptual hashes (generated, plus the
// corpus's real photos), then similar-queries at the default near distance timed one by one, as
// GET /v1/images/{id}/similar makes them, against a sequential scan with bit_count over the same
// table in the same run. Prints p50/p95 of each (aim: the index's p95 under 50 ms), their ratio, and
// whether both found the same images. Three rounds of queries, for the spread on a noisy machine.
//
//   node bench/similar.ts [FOLDER] [--rows 10000000] [--queries 200] [--scans 5] [--photos 74] [--also 6]
//
// --also 6 times the index at other distances too (no scan). FOLDER defaults to the corpus (bench/corpus.ts). Each real photo is stored with a resized, JPEG
// q60 copy and a 5%-cropped copy as queries; the rest of the queries are generated hashes.
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import type { Db } from '../src/catalog/database.ts';
import { addHash, explainNear, nearestHashes, signedOf } from '../src/catalog/image-hashes.ts';
import { DEFAULT_NEAR_DISTANCE } from '../src/config/config.ts';
import { corpusFolder, fingerprintPhoto, listImages, type Photo } from './corpus.ts';
import { generatedCatalog, step } from './generated-catalog.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rows: { type: 'string', default: '10000000' },
    queries: { type: 'string', default: '200' },
    scans: { type: 'string', default: '5' },
    photos: { type: 'string', default: '1000' },
    // Also timed, without the scan: a smaller distance probes 17 values a band instead of 137.
    also: { type: 'string', default: '6' },
  },
});
const ROWS = Number(values.rows);
const QUERIES = Number(values.queries);
const SCANS = Number(values.scans);
const DISTANCE = DEFAULT_NEAR_DISTANCE;
const COPIES = ['resize 50% + jpeg q60', 'crop 5% (edges)'];

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const times = (label: string, ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  const [p50, p95] = [percentile(s, 50), percentile(s, 95)];
  console.log(
    `  ${label}: p50 ${p50.toFixed(2)} ms, p95 ${p95.toFixed(2)} ms, max ${s.at(-1)!.toFixed(2)} ms (${ms.length})`,
  );
  return { p50, p95 };
};
const randomHash = () =>
  Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join('');

console.log(
  `load average at start: ${loadavg()
    .map((n) => n.toFixed(1))
    .join(' ')} (${availableParallelism()} cores)`,
);
const files = listImages(corpusFolder(positionals[0])).slice(0, Number(values.photos));
const photos: Photo[] = [];
await step(`fingerprinting ${files.length} corpus photos and 2 copies of each`, async () => {
  for (const file of files) photos.push(await fingerprintPhoto(file, COPIES));
});
const real = photos.filter((p) => !p.flat);

const catalog = await generatedCatalog('similar');
const { db } = catalog;
try {
  const [{ id: customerId }] = (
    await sql<{
      id: string;
    }>`insert into customers (id, name) values (gen_random_uuid(), 'Bench') returning id`.execute(db)
  ).rows as [{ id: string }];
  // Loading 10M rows into six B-trees row by row would take most of an hour: the indexes are dropped
  // and rebuilt after the load, from their own definitions (pg_indexes), so they are the ones 0026 makes.
  const { rows: indexes } = await sql<{ name: string; definition: string }>`
    select indexname as name, indexdef as definition from pg_indexes
    where tablename = 'image_hashes' and indexname <> 'image_hashes_pkey'`.execute(db);
  for (const index of indexes) await sql`drop index ${sql.ref(index.name)}`.execute(db);
  // Bands are the hash's four 16-bit quarters, most significant first, as catalog/image-hashes.ts cuts them.
  const batch = 1_000_000;
  for (let done = 0; done < ROWS; done += batch) {
    const n = Math.min(batch, ROWS - done);
    await step(`hashes ${done + 1}..${done + n} of ${ROWS}`, () =>
      sql`insert into image_hashes (image_id, customer_id, sha256, phash, b0, b1, b2, b3, landed_at)
          select gen_random_uuid(), ${customerId}::uuid, md5(i::text), p,
                 ((p >> 48) & 65535)::int, ((p >> 32) & 65535)::int, ((p >> 16) & 65535)::int, (p & 65535)::int,
                 now() - (i % 604800) * interval '1 second'
          from (select i, ((random() * 4294967295)::bigint << 32) # (random() * 4294967295)::bigint as p
                from generate_series(${done + 1}::bigint, ${done + n}::bigint) i) g`.execute(db),
    );
  }
  await step(`${real.length} real photos`, async () => {
    for (const photo of real) {
      await addHash(db, {
        imageId: crypto.randomUUID(),
        customerId,
        sha256: photo.sha256,
        phash: photo.hash,
        landedAt: new Date(),
        flat: false,
        exactOf: null,
        nearOf: null,
        nearDistance: null,
      });
    }
  });
  for (const index of indexes) await step(`index ${index.name}`, () => sql.raw(index.definition).execute(db));
  await step('vacuum analyze, checkpoint', async () => {
    await sql`vacuum analyze image_hashes`.execute(db);
    await sql`checkpoint`.execute(db);
  });
  const size = await sql<{ table: string; indexes: string }>`
    select pg_size_pretty(pg_table_size('image_hashes')) as table, pg_size_pretty(pg_indexes_size('image_hashes')) as indexes`.execute(
    db,
  );
  console.log(`image_hashes: ${size.rows[0]!.table} of rows, ${size.rows[0]!.indexes} of indexes`);

  // The queries: every real copy (its original is in the table), then generated hashes.
  const queries = [
    ...real.flatMap((p) => COPIES.map((c) => ({ phash: p.copies[c]!, original: p.hash }))),
    ...Array.from({ length: QUERIES }, () => ({ phash: randomHash(), original: undefined })),
  ].slice(0, Math.max(QUERIES, 1));
  const search = (phash: string, maxDistance = DISTANCE) =>
    nearestHashes(db, { kind: 'near', customerId, sha256: '-', phash, maxDistance, limit: 50 });
  // The baseline: the same answer from every row of the customer, checking each hash with bit_count.
  const scan = (phash: string) =>
    db.transaction().execute(async (trx: Db) => {
      await sql`set local enable_bitmapscan = off`.execute(trx);
      await sql`set local enable_indexscan = off`.execute(trx);
      await sql`set local enable_indexonlyscan = off`.execute(trx);
      const distance = sql`bit_count((h.phash # ${signedOf(phash)}::bigint)::bit(64))`;
      const { rows } = await sql<{ imageId: string }>`
        select image_id as "imageId" from image_hashes h
        where h.customer_id = ${customerId} and h.sha256 <> '-' and ${distance} <= ${DISTANCE}
        order by ${distance}, h.landed_at, h.image_id
        limit 50`.execute(trx);
      return rows;
    });
  const plan = await explainNear(db, customerId, queries[0]!.phash, DISTANCE);
  console.log(`the near search's plan:\n${plan.map((line) => `    ${line}`).join('\n')}`);

  const ratios: number[] = [];
  for (let round = 1; round <= 3; round++) {
    console.log(`round ${round}, maxDistance ${DISTANCE}:`);
    const indexed: number[] = [];
    let found = 0;
    let expected = 0;
    for (const q of queries) {
      const started = performance.now();
      const rows = await search(q.phash);
      indexed.push(performance.now() - started);
      if (q.original !== undefined) {
        expected++;
        const { rows: hit } = await sql<{ n: number }>`
          select count(*)::int as n from image_hashes where customer_id = ${customerId}
            and phash = ${signedOf(q.original)}::bigint
            and image_id in (${sql.join(rows.length ? rows.map((r) => r.imageId) : ['00000000-0000-0000-0000-000000000000'])})`.execute(
          db,
        );
        if (hit[0]!.n > 0) found++;
      }
    }
    const scanned: number[] = [];
    let agree = 0;
    for (const q of queries.slice(0, SCANS)) {
      const started = performance.now();
      const rows = await scan(q.phash);
      scanned.push(performance.now() - started);
      const byIndex = (await search(q.phash)).map((r) => r.imageId).sort();
      if (JSON.stringify(byIndex) === JSON.stringify(rows.map((r) => r.imageId).sort())) agree++;
    }
    for (const distance of values.also ? values.also.split(',').map(Number) : []) {
      const smaller: number[] = [];
      for (const q of queries) {
        const started = performance.now();
        await search(q.phash, distance);
        smaller.push(performance.now() - started);
      }
      times(`index at maxDistance ${distance}`, smaller);
    }
    const a = times(`index (four 16-bit bands) at maxDistance ${DISTANCE}`, indexed);
    const b = times('sequential scan with bit_count', scanned);
    ratios.push(b.p50 / a.p50);
    console.log(
      `  ratio scan/index at p50: ${(b.p50 / a.p50).toFixed(0)}x; the scan and the index found the same images for ${agree} of ${scanned.length} queries; real copies found their original: ${found} of ${expected}`,
    );
  }
  const sorted = [...ratios].sort((x, y) => x - y);
  console.log(
    `ratio scan/index at p50 over 3 rounds: ${ratios.map((r) => `${r.toFixed(0)}x`).join(', ')} (spread ${sorted[0]!.toFixed(0)}x..${sorted[2]!.toFixed(0)}x)`,
  );
} finally {
  await catalog.close();
}
