import { PutBucketLifecycleConfigurationCommand } from '@aws-sdk/client-s3';
import cliProgress from 'cli-progress';
import { systemClock } from '../../clock.ts';
import type { Config } from '../../config/config.ts';
import { formatDuration } from '../../config/duration.ts';
import { openTusStorage } from '../../ingest/tus-store.ts';
import { openLake } from '../../lake/open.ts';
import { S3Lake } from '../../lake/s3.ts';
import { createMetrics } from '../../observability/metrics.ts';
import { audit } from '../../retention/audit.ts';
import { lifecycleRules } from '../../retention/lifecycle.ts';
import { purgeExpired } from '../../retention/purge.ts';
import type { Receipt } from '../../retention/receipts.ts';
import { verifyReceipts } from '../../retention/receipts.ts';
import { withSchedulerLock } from '../../retention/scheduler.ts';
import { openStorage } from '../storage.ts';

function printReceipt(receipt: Receipt): void {
  const b = receipt.body;
  console.log(
    `receipt #${receipt.seq} ${b.kind} ${b.startedAt} → ${b.finishedAt}  hash ${receipt.hash.slice(0, 16)}…`,
  );
  for (const [kind, c] of Object.entries(b.deleted))
    console.log(
      `  ${kind.padEnd(10)} ${String(c.count).padStart(8)} deleted  ${(c.bytes / 1e6).toFixed(1).padStart(10)} MB`,
    );
  if (Object.keys(b.deleted).length === 0 && (b.kind === 'retention' || b.kind === 'erasure'))
    console.log('  nothing had expired');
  const words = {
    kept: 'kept by hold',
    released: 'taken after release of hold',
    overridden: 'erased despite hold',
  };
  for (const [what, byHold] of Object.entries(b.holds ?? {}))
    for (const [holdId, c] of Object.entries(byHold as Record<string, { images: number }>))
      console.log(`  ${String(c.images).padStart(8)} images ${words[what as keyof typeof words]} ${holdId}`);
}

function bar(label: string) {
  if (!process.stderr.isTTY) return undefined;
  return new cliProgress.SingleBar(
    { format: `${label} [{bar}] {value}/{total} {phase}`, hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
}

export async function retentionCommand(
  config: Config,
  sub: string | undefined,
  flags: { apply?: boolean; json?: boolean; 'allow-empty'?: boolean },
): Promise<number> {
  if (sub === 'lifecycle') {
    const lake = await openLake(config);
    const prefix = lake instanceof S3Lake ? lake.prefix : '';
    const rules = lifecycleRules(config.retentionMs, prefix);
    console.log(
      `# Backstop: objects are deleted ${rules.days} days after they land (window ${formatDuration(config.retentionMs)} + 1 day).`,
    );
    console.log(
      '\n# S3 (aws s3api put-bucket-lifecycle-configuration --bucket BUCKET --lifecycle-configuration file://rules.json)',
    );
    console.log(JSON.stringify(rules.s3, null, 2));
    console.log(
      '\n# Google Cloud Storage (gcloud storage buckets update gs://BUCKET --lifecycle-file=rules.json)',
    );
    console.log(JSON.stringify(rules.gcs, null, 2));
    console.log(
      `\n# Kafka topic carrying images (kafka-configs.sh --alter --entity-type topics --entity-name TOPIC --add-config retention.ms=${rules.kafkaRetentionMs})`,
    );
    console.log(`retention.ms=${rules.kafkaRetentionMs}`);
    if (!flags.apply) return 0;
    if (!(lake instanceof S3Lake)) {
      console.error(
        '\nimagelake: --apply needs an object-store lake (IMAGELAKE_LAKE_URL=s3://...); this lake is a local folder, where the purge itself deletes files.',
      );
      return 2;
    }
    // Replaces the bucket's lifecycle configuration: other rules on the bucket must be merged by hand.
    await lake.client.send(
      new PutBucketLifecycleConfigurationCommand({
        Bucket: lake.bucket,
        LifecycleConfiguration: rules.s3 as never,
      }),
    );
    console.log(`\napplied to s3://${lake.bucket} (${rules.s3.Rules.length} rules)`);
    return 0;
  }

  if (!['purge', 'audit', 'verify-receipts', 'receipts'].includes(sub ?? '')) {
    console.error(
      'usage: imagelake retention purge | audit [--json] | verify-receipts | receipts | lifecycle [--apply]  (--allow-empty: run on an empty catalog or lake)',
    );
    return 2;
  }
  const storage = await openStorage(config, { allowEmpty: flags['allow-empty'] });
  try {
    const clock = systemClock;
    if (sub === 'purge') {
      const tusStorage = await openTusStorage(storage.lake, { expiryMs: config.tus.expiryMs, s3: config.s3 });
      const result = await withSchedulerLock(storage.pool, () =>
        purgeExpired({
          claimPrefixes: config.kafka.claimPrefixes,
          db: storage.db,
          lake: storage.lake,
          clock,
          log: storage.log,
          metrics: createMetrics(),
          retentionMs: config.retentionMs,
          statsRetentionMs: config.statsRetentionMs,
          tus: {
            storage: tusStorage,
            expiryMs: config.tus.expiryMs,
          },
        }),
      );
      if (!result.ran) {
        console.error(
          'A purge is running already (the scheduler of a running imagelake); its receipt will appear in `imagelake retention receipts`.',
        );
        return 1;
      }
      printReceipt(result.value);
      return 0;
    }
    if (sub === 'audit') {
      const progress = bar('auditing');
      let started = false;
      const report = await audit(
        {
          db: storage.db,
          lake: storage.lake,
          clock,
          retentionMs: config.retentionMs,
          statsRetentionMs: config.statsRetentionMs,
          claimPrefixes: config.kafka.claimPrefixes,
        },
        (phase, done, total) => {
          if (!progress) return;
          if (!started) progress.start(total, done, { phase });
          started = true;
          progress.setTotal(total);
          progress.update(done, { phase });
        },
      );
      progress?.stop();
      if (flags.json) console.log(JSON.stringify(report, null, 2));
      else {
        console.log(
          `audit at ${report.at}: ${report.scanned.catalogRows} catalog rows, ${report.scanned.lakeObjects} lake objects scanned`,
        );
        for (const f of report.findings)
          console.log(`  ${f.kind.padEnd(20)} ${f.where.padEnd(9)} ${f.subject}  ${f.detail}`);
        for (const [holdId, h] of Object.entries(report.held))
          console.log(
            `  held by ${holdId}: ${h.images} images, ${h.pastWindow} past their window (kept by the hold, not a violation)`,
          );
        console.log(
          report.findings.length === 0
            ? 'clean: nothing is older than its window, and nothing is orphaned'
            : `${report.findings.length} findings`,
        );
      }
      return report.findings.length === 0 ? 0 : 1;
    }
    if (sub === 'verify-receipts') {
      const progress = bar('verifying');
      let started = false;
      const result = await verifyReceipts(storage.db, (done, total) => {
        if (!progress) return;
        if (!started) progress.start(total, done, { phase: '' });
        started = true;
        progress.update(done);
      });
      progress?.stop();
      for (const p of result.problems)
        console.log(`  receipt ${p.seq ?? '(missing)'}${p.runId ? ` (run ${p.runId})` : ''}: ${p.problem}`);
      console.log(
        result.ok
          ? `${result.receipts} receipts, chain intact`
          : `${result.receipts} receipts, chain BROKEN: ${result.problems.length} problems`,
      );
      return result.ok ? 0 : 1;
    }
    if (sub === 'receipts') {
      const { listReceipts } = await import('../../retention/receipts.ts');
      for (const receipt of (await listReceipts(storage.db, { limit: 20 })).reverse()) printReceipt(receipt);
      return 0;
    }
    console.error(
      'usage: imagelake retention purge | audit [--json] | verify-receipts | receipts | lifecycle [--apply]  (--allow-empty: run on an empty catalog or lake)',
    );
    return 2;
  } finally {
    await storage.close();
  }
}
