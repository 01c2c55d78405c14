import { recordLedger } from '../catalog/purge-runs.ts';
import { deleteTusUpload, expiredTusUploads, tusUploadsByIds } from '../catalog/tus-uploads.ts';
import type { TusStorage } from '../ingest/tus-store.ts';
import { TUS_AREA, tusKeyPrefix } from '../lake/object-keys.ts';
import type { Lake } from '../lake/port.ts';
import type { Finding } from './audit.ts';
import { executeRun, type LedgerItem, type RunDeps, recordObjects } from './runs.ts';

/**
 * Resumable uploads hold image bytes until they land. One left unfinished past IMAGELAKE_TUS_EXPIRY
 * is abandoned: its lake objects and (S3) its multipart parts are deleted under ledger kind
 * `upload`, its row with them. Objects of uploads that landed (or have no row) are deleted once
 * older than the expiry: a landing that died before removing them leaves them behind.
 */
export async function planAbandonedUploads(
  deps: RunDeps,
  runId: string,
  storage: TusStorage,
  now: Date,
  expiryMs: number,
): Promise<void> {
  const { db, lake } = deps;
  for (;;) {
    const batch = await expiredTusUploads(db, now, 100);
    if (batch.length === 0) break;
    for (const upload of batch) {
      const items: LedgerItem[] = [];
      for await (const object of lake.list(tusKeyPrefix(upload.id)))
        items.push({ kind: 'upload', key: object.key, subjectHash: null, bytes: object.bytes });
      // Parts of an unfinished S3 multipart upload are no objects a listing shows; they go first, so
      // a crash before the row is deleted only means the next purge finds nothing more to abort.
      const parts = await storage.abandon(upload.id);
      if (parts > 0) items.push({ kind: 'upload', key: null, subjectHash: null, bytes: parts, done: true });
      await db.transaction().execute(async (trx) => {
        await recordLedger(trx, runId, items);
        await deleteTusUpload(trx, upload.id);
      });
    }
    await executeRun(deps, runId);
  }
  const leftovers: Array<{ key: string; bytes: number }> = [];
  for (const group of await tusObjectsByUpload(lake)) {
    const row = (await tusUploadsByIds(db, [group.id]))[0];
    if (row && !row.image_id) continue;
    for (const object of group.objects)
      if (now.getTime() - object.modifiedAt.getTime() > expiryMs) leftovers.push(object);
  }
  await recordObjects(db, runId, 'upload', leftovers);
}

/** The audit's reading of the lake's tus/ folder: expired unfinished uploads and orphaned objects. */
export async function auditTusArea(
  db: RunDeps['db'],
  lake: Lake,
  now: Date,
  graceMs: number,
): Promise<{ objects: number; findings: Finding[] }> {
  const findings: Finding[] = [];
  let objects = 0;
  for (const group of await tusObjectsByUpload(lake)) {
    const row = (await tusUploadsByIds(db, [group.id]))[0];
    for (const object of group.objects) {
      objects++;
      if (row && !row.image_id && row.expires_at.getTime() < now.getTime())
        findings.push({
          kind: 'expired-object',
          where: 'lake',
          subject: object.key,
          detail: `a resumable upload unfinished since ${row.expires_at.toISOString()} (IMAGELAKE_TUS_EXPIRY)`,
        });
      else if ((!row || row.image_id) && now.getTime() - object.modifiedAt.getTime() > graceMs)
        findings.push({
          kind: 'orphan-object',
          where: 'lake',
          subject: object.key,
          detail: row ? 'a resumable upload that has landed still holds it' : 'no resumable upload owns it',
        });
    }
  }
  return { objects, findings };
}

/** The tus/ folder's objects, grouped by upload id (its bytes and the store's .json/.info/.part). */
async function tusObjectsByUpload(lake: Lake) {
  const groups = new Map<string, Array<{ key: string; bytes: number; modifiedAt: Date }>>();
  for await (const object of lake.list(TUS_AREA)) {
    const id = object.key.slice(TUS_AREA.length).split('.')[0]!;
    groups.set(id, [...(groups.get(id) ?? []), object]);
  }
  return [...groups].map(([id, objects]) => ({ id, objects }));
}
