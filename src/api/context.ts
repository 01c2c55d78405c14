import type pg from 'pg';
import type { Logger } from 'pino';
import type { ExportSummary } from '../analytics/export.ts';
import type { Db } from '../catalog/database.ts';
import type { Clock } from '../clock.ts';
import type { Config } from '../config/config.ts';
import type { CustomerLimits } from '../ingest/customer-limits.ts';
import type { Lander } from '../ingest/land.ts';
import type { TusUploads } from '../ingest/tus.ts';
import type { UploadSlots } from '../ingest/upload-slots.ts';
import type { Uploads } from '../ingest/uploads.ts';
import type { Lake } from '../lake/port.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Receipt } from '../retention/receipts.ts';
import type { Drain } from './drain.ts';

/** What routes may call. Routes translate HTTP into calls on these and nothing more. */
export interface ApiContext {
  config: Config;
  db: Db;
  lake: Lake;
  lander: Lander;
  /** Per-customer limits: the settings in force and the rate limits' buckets. */
  customerLimits: CustomerLimits;
  uploads: Uploads;
  /** Resumable uploads (tus). */
  tus: TusUploads;
  /** Uploads in progress per customer in this process, over every way in for bytes. */
  uploadSlots: UploadSlots;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** The analyst role's connections (analytics schema only, read-only); undefined when it could not be set up. */
  analyst: { pool: pg.Pool; url: string } | undefined;
  /** Runs the retention purge now; undefined when one is already running elsewhere. */
  purgeNow: () => Promise<Receipt | undefined>;
  /** Writes the analytics Parquet now; undefined when the scheduler is busy with other work. */
  exportNow: () => Promise<ExportSummary | undefined>;
  /** Throws when a dependency the API needs does not answer. */
  ready: () => Promise<Record<string, string>>;
  /** Counts the requests in hand and refuses new ones while the process shuts down. */
  drain?: Drain;
}
