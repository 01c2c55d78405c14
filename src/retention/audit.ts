import { staleDaily } from '../analytics/rollups.ts';
import { allRetentions } from '../catalog/customers.ts';
import type { Db } from '../catalog/database.ts';
import { deadLettersBefore } from '../catalog/dead-letters.ts';
import { activeHolds } from '../catalog/holds.ts';
import { orphanHashes } from '../catalog/image-hashes.ts';
import { auditPage, countImages, holdsOver } from '../catalog/images-retention.ts';
import { unfinishedRuns } from '../catalog/purge-runs.ts';
import { auditDeliveries } from '../catalog/webhook-deliveries.ts';
import type { Clock } from '../clock.ts';
import { utcDay } from '../clock.ts';
import { IMAGE_AREAS } from '../lake/object-keys.ts';
import type { Lake } from '../lake/port.ts';
import { auditTusArea } from './abandoned-uploads.ts';
import { effectiveWindow } from './windows.ts';

export type FindingKind =
  | 'expired-row'
  | 'row-missing-object'
  | 'expired-object'
  | 'orphan-object'
  | 'expired-aggregates'
  | 'expired-deliveries'
  | 'expired-dead-letters'
  | 'orphan-deliveries'
  | 'orphan-hash'
  | 'unfinished-run'
  | 'hold-past-until';

export interface Finding {
  kind: FindingKind;
  where: 'catalog' | 'lake' | 'analytics';
  /** Lake key or image id. */
  subject: string;
  detail: string;
}

export interface AuditReport {
  at: string;
  scanned: { catalogRows: number; lakeObjects: number };
  findings: Finding[];
  /**
   * Images under an active legal hold, apart from the findings: kept on purpose, not violations.
   * By hold: how many images it covers and how many of them are past their window.
   */
  held: Record<string, { images: number; pastWindow: number }>;
}

export interface AuditDeps {
  db: Db;
  lake: Lake;
  clock: Clock;
  retentionMs: number;
  statsRetentionMs: number;
  claimPrefixes?: string[];
  /**
   * An object younger than this with no row is not yet an orphan: a landing writes the object a
   * moment before it commits the row, and processing writes outputs before recording them.
   */
  orphanGraceMs?: number;
}

export type AuditProgress = (phase: 'catalog' | 'lake', done: number, total: number) => void;

const KEY = /^(raw|renditions|metadata)\/dt=(\d{4}-\d{2}-\d{2})\/customer=([^/]+)\/([0-9a-f-]{36})/;

/**
 * Reads the storage itself, not just the catalog: every catalog row (is it past its window? are its
 * objects there?), every object in the lake's image areas (does a row own it? is it past its
 * window?), the aggregates (past the statistics window?) and the purge runs (any left unfinished?).
 */
export async function audit(deps: AuditDeps, onProgress?: AuditProgress): Promise<AuditReport> {
  const { db, lake, clock, retentionMs } = deps;
  const now = clock.now();
  const grace = deps.orphanGraceMs ?? 15 * 60_000;
  const findings: Finding[] = [];
  const held: AuditReport['held'] = {};
  const windows = new Map<string, number>();
  for (const c of await allRetentions(db)) windows.set(c.id, effectiveWindow(retentionMs, c.retention_ms));
  const windowOf = (customerId: string) => windows.get(customerId) ?? retentionMs;

  // The catalog.
  const totalRows = await countImages(db);
  const rows = new Map<string, { receivedAt: Date; customerId: string }>();
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const page = await auditPage(db, after, 1000);
    if (page.length === 0) break;
    const holdsOf = await holdsOver(
      db,
      page.map((r) => r.id),
    );
    for (const row of page) {
      rows.set(row.id, { receivedAt: row.received_at, customerId: row.customer_id });
      const expiresAt = row.received_at.getTime() + windowOf(row.customer_id);
      const holdIds = holdsOf.get(row.id) ?? [];
      for (const holdId of holdIds) {
        const count = held[holdId] ?? { images: 0, pastWindow: 0 };
        held[holdId] = count;
        count.images++;
        if (expiresAt < now.getTime()) count.pastWindow++;
      }
      if (expiresAt < now.getTime() && holdIds.length === 0) {
        findings.push({
          kind: 'expired-row',
          where: 'catalog',
          subject: row.id,
          detail: `expired ${new Date(expiresAt).toISOString()}, still in the catalog`,
        });
      }
      const expected = [
        row.raw_key,
        ...(row.status === 'processed' ? (row.renditions ?? []).map((r) => r.key) : []),
      ];
      for (const key of expected) {
        if (!(await lake.head(key)))
          findings.push({
            kind: 'row-missing-object',
            where: 'catalog',
            subject: row.id,
            detail: `its object ${key} is not in the lake`,
          });
      }
      after = row.id;
    }
    onProgress?.('catalog', rows.size, totalRows);
  }

  // The lake, object by object.
  let objects = 0;
  for (const area of IMAGE_AREAS) {
    for await (const object of lake.list(`${area}/`)) {
      objects++;
      if (objects % 500 === 0) onProgress?.('lake', objects, Math.max(objects, totalRows * 4));
      const match = KEY.exec(object.key);
      if (!match) {
        findings.push({
          kind: 'orphan-object',
          where: 'lake',
          subject: object.key,
          detail: 'not laid out as an image copy; no image owns it',
        });
        continue;
      }
      const [, , partitionDay, customerId, imageId] = match;
      const row = rows.get(imageId!);
      if (row) continue; // its row was judged above
      const endOfDay = Date.parse(`${partitionDay}T00:00:00Z`) + 86_400_000;
      if (endOfDay + windowOf(customerId!) < now.getTime()) {
        findings.push({
          kind: 'expired-object',
          where: 'lake',
          subject: object.key,
          detail: `in a day partition past its window, with no catalog row`,
        });
      } else if (now.getTime() - object.modifiedAt.getTime() > grace) {
        findings.push({
          kind: 'orphan-object',
          where: 'lake',
          subject: object.key,
          detail: `no catalog row owns image ${imageId}`,
        });
      }
    }
  }
  onProgress?.('lake', objects, objects);

  // Claim checks waiting for a message past the window hold image bytes nobody will collect.
  for (const prefix of deps.claimPrefixes ?? []) {
    for await (const object of lake.list(prefix)) {
      objects++;
      if (now.getTime() - object.modifiedAt.getTime() > retentionMs) {
        findings.push({
          kind: 'expired-object',
          where: 'lake',
          subject: object.key,
          detail: 'a claim-check object older than the window',
        });
      }
    }
  }

  // Resumable uploads: unfinished past their expiry, or objects no unfinished upload owns.
  const tus = await auditTusArea(db, lake, now, grace);
  objects += tus.objects;
  findings.push(...tus.findings);

  // The similarity index: fingerprints of an image that is gone would still answer searches.
  for (const orphan of await orphanHashes(db, 1000)) {
    findings.push({
      kind: 'orphan-hash',
      where: 'catalog',
      subject: orphan.imageId,
      detail: `the similarity index still holds image ${orphan.imageId} (landed ${orphan.landedAt.toISOString()}), which the catalog no longer has`,
    });
  }

  // The analytics store: aggregates past their own window.
  const oldestKeptStatsDay = utcDay(new Date(now.getTime() - deps.statsRetentionMs));
  const stale = await staleDaily(db, oldestKeptStatsDay);
  if (Number(stale?.n ?? 0) > 0) {
    findings.push({
      kind: 'expired-aggregates',
      where: 'analytics',
      subject: 'analytics.rollup_daily',
      detail: `${stale?.n} rows older than ${oldestKeptStatsDay} (oldest ${stale?.oldest})`,
    });
  }

  // Webhook deliveries hold image metadata: none past its window, none about an image that is gone.
  const deliveries = await auditDeliveries(db, now, retentionMs);
  if (deliveries.expired > 0)
    findings.push({
      kind: 'expired-deliveries',
      where: 'catalog',
      subject: 'webhook_deliveries',
      detail: `${deliveries.expired} webhook deliveries older than their window (oldest ${deliveries.oldest?.toISOString()})`,
    });
  const letters = await deadLettersBefore(db, new Date(now.getTime() - retentionMs));
  if (letters.count > 0)
    findings.push({
      kind: 'expired-dead-letters',
      where: 'catalog',
      subject: 'dead_letters',
      detail: `${letters.count} records of dead-lettered Kafka messages older than the window (oldest ${letters.oldest?.toISOString()})`,
    });
  if (deliveries.orphaned > 0)
    findings.push({
      kind: 'orphan-deliveries',
      where: 'catalog',
      subject: 'webhook_deliveries',
      detail: `${deliveries.orphaned} webhook deliveries about images no longer in the catalog`,
    });

  // Runs a crash left open still owe deletions.
  const open = await unfinishedRuns(db);
  for (const run of open) {
    findings.push({
      kind: 'unfinished-run',
      where: 'catalog',
      subject: run.id,
      detail: `${run.kind} run started ${run.started_at.toISOString()} never finished; the next purge resumes it`,
    });
  }

  // A hold is ended by an admin, never by its date; one past its expected end needs a decision.
  for (const hold of await activeHolds(db)) {
    if (hold.until && hold.until.getTime() < now.getTime())
      findings.push({
        kind: 'hold-past-until',
        where: 'catalog',
        subject: hold.id,
        detail: `hold "${hold.reason}" was expected to end ${hold.until.toISOString()} and is still active; release it (DELETE /v1/holds/${hold.id}) or extend it`,
      });
  }

  return {
    at: now.toISOString(),
    scanned: { catalogRows: rows.size, lakeObjects: objects },
    findings,
    held,
  };
}
