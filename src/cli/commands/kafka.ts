import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Producer } from '@platformatic/kafka';
import cliProgress from 'cli-progress';
import type { Config } from '../../config/config.ts';
import { connectionOptions } from '../../ingest/kafka/client.ts';
import { createTopicCommand, explain } from '../../ingest/kafka/problems.ts';
import { replayDeadLetters } from '../../ingest/kafka/replay.ts';
import { openLake } from '../../lake/open.ts';
import { progressBar } from '../progress.ts';
import { openStorage, refuseEmptyLake } from '../storage.ts';
import { collectFiles } from './upload.ts';

export interface ProduceOptions {
  customerId: string;
  topic: string;
  /** Files larger than this go as claim checks: the bytes into the lake, a reference into Kafka. */
  claimCheckOver: number;
  quiet: boolean;
  /** Write claim checks even into a lake that holds nothing yet. */
  allowEmpty?: boolean;
}

/** What stopped producing, and what to do about it. */
function whyNotSent(config: Config, topic: string, error: unknown): string {
  const problem = explain(error, config.kafka);
  if (problem.reason !== 'topic_missing') return problem.message;
  return `Kafka topic "${topic}" does not exist at ${config.kafka.brokers.join(',')}: start imagelake's kafka role on this broker (it creates its topics when IMAGELAKE_KAFKA_CREATE_TOPICS is on, the default for a broker on this machine), or create it with ${createTopicCommand(config.kafka, topic)}.`;
}

/**
 * Streams files into the image topic, as the company's streaming application would: for demos,
 * load tests and backfills. Each message's id is the file's SHA-256, so producing twice lands once.
 */
export async function produce(config: Config, paths: string[], options: ProduceOptions): Promise<number> {
  if (!config.kafka.brokers.length) {
    console.error('imagelake: set IMAGELAKE_KAFKA_BROKERS (or --brokers) to the Kafka bootstrap servers.');
    return 2;
  }
  const files = await collectFiles(paths);
  if (files.length === 0) {
    console.error('No files found under the given paths.');
    return 2;
  }
  const claimPrefix = config.kafka.claimPrefixes[0]!;
  const lake = await openLake(config);
  // Claim checks written to a lake serve does not read would all be dead letters.
  if (!options.allowEmpty && files.some((f) => f.bytes > options.claimCheckOver)) await refuseEmptyLake(lake);
  const producer = new Producer({ ...connectionOptions(config.kafka, 'produce'), acks: -1 });
  const totalBytes = files.reduce((s, f) => s + f.bytes, 0);
  const bar = options.quiet
    ? undefined
    : new cliProgress.SingleBar(
        {
          format:
            'producing [{bar}] {percentage}% | {value}/{total} MB | {files} files | {claims} claim checks',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
  const mb = (n: number) => Math.round(n / 1e5) / 10;
  bar?.start(mb(totalBytes), 0, { files: 0, claims: 0 });
  const started = performance.now();
  let sent = 0;
  let claims = 0;
  let bytes = 0;
  try {
    for (const file of files) {
      const data = await readFile(file.path);
      const id = createHash('sha256').update(data).digest('hex');
      const headers = new Map<Buffer, Buffer>([
        [Buffer.from('customer-id'), Buffer.from(options.customerId)],
        [Buffer.from('message-id'), Buffer.from(id)],
        [Buffer.from('filename'), Buffer.from(basename(file.path))],
      ]);
      let value = data;
      if (data.length > options.claimCheckOver) {
        const ref = `${claimPrefix}${id}`;
        await lake.put(ref, data);
        value = Buffer.from(JSON.stringify({ ref, customerId: options.customerId }));
        headers.set(Buffer.from('content-type'), Buffer.from('application/vnd.imagelake.claim-check+json'));
        claims++;
      }
      await producer.send({ messages: [{ topic: options.topic, key: Buffer.from(id), value, headers }] });
      sent++;
      bytes += file.bytes;
      bar?.update(mb(bytes), { files: sent, claims });
    }
  } catch (error) {
    bar?.stop();
    console.error(`imagelake: ${whyNotSent(config, options.topic, error)}`);
    console.error(`${sent} of ${files.length} files were sent; producing again lands each file once.`);
    return 1;
  } finally {
    bar?.stop();
    await producer.close();
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${sent} messages to ${options.topic} (${claims} claim checks), ${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s`,
  );
  return 0;
}

/**
 * `imagelake kafka replay-dlq`: every dead letter (of a code, since a moment) back onto its original
 * topic, with its message-id, so what landed meanwhile lands nothing twice. Reads the catalog with
 * serve's settings to mark what it replayed; --dry-run counts only.
 */
export async function replayDlq(
  config: Config,
  flags: { code?: string; since?: Date; dryRun: boolean; again: boolean; allowEmpty: boolean },
): Promise<number> {
  if (!config.kafka.brokers.length) {
    console.error('imagelake: set IMAGELAKE_KAFKA_BROKERS (or --brokers) to the Kafka bootstrap servers.');
    return 2;
  }
  const storage = await openStorage(config, { allowEmpty: flags.allowEmpty });
  const bar = progressBar('dead letters [{bar}] {value}/{total}');
  let started = false;
  try {
    const summary = await replayDeadLetters(config.kafka, storage.db, {
      code: flags.code,
      since: flags.since,
      dryRun: flags.dryRun,
      again: flags.again,
      onProgress: (read, total) => {
        if (!started) bar?.start(total, read);
        started = true;
        bar?.update(read);
      },
    });
    bar?.stop();
    const verb = flags.dryRun ? 'would replay' : 'replayed';
    console.log(`${summary.read} dead letters read; ${verb} ${summary.replayed}`);
    for (const [code, n] of Object.entries(summary.byCode))
      console.log(`  ${verb} ${String(n).padStart(6)}  ${code}`);
    const s = summary.skipped;
    console.log(
      `skipped: ${s.otherCode} of another code, ${s.before} before --since, ${s.replayedBefore} replayed before (--again replays them), ${s.notADeadLetter} without dead-letter headers`,
    );
    return 0;
  } catch (error) {
    bar?.stop();
    console.error(`imagelake: ${explain(error, config.kafka).message}`);
    return 1;
  } finally {
    await storage.close();
  }
}
