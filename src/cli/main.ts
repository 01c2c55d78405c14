// Over 350 lines: the help text of every command is a fifth of it, and dispatch to the commands
// (their work is in commands/) belongs beside it, so that `--help` and what runs never drift apart.
import { parseArgs } from 'node:util';
import { type Config, ConfigError, loadConfig } from '../config/config.ts';
import { parseBytes } from '../config/duration.ts';
import { stopTracing } from '../observability/tracing.ts';
import { ROLES, type Role, startServer } from '../server.ts';
import { ApiClient } from './client.ts';
import { customersCommand } from './commands/customers.ts';
import { parseSince, reprocessCommand, testProcessor } from './commands/processors.ts';
import { retryCommand } from './commands/retry.ts';
import { upload } from './commands/upload.ts';
import { queueCommand, usageCommand } from './commands/usage.ts';
import { webhooksCommand } from './commands/webhooks.ts';
import { fail } from './fail.ts';
import { StorageError } from './storage.ts';
import { printRows } from './table.ts';

const HELP = `imagelake: an image data platform

Usage: imagelake <command> [options]

  serve [--roles api,worker,scheduler]   Run the platform (all roles by default). Settings come from
                                         IMAGELAKE_* environment variables; see the README.
  customers create NAME                  Create a customer; prints its id and API key (shown once).
  customers list                         List customers.
  customers limits ID                    Show a customer's limits (own, in force) and this month's
        [--uploads-per-second N]         usage; with options, set them first. N: a number, 0 for no
        [--bytes-per-second SIZE]        limit, or "default" for the platform's (IMAGELAKE_RATE_*,
        [--monthly-images N]             IMAGELAKE_QUOTA_*, IMAGELAKE_MAX_QUEUE_DEPTH_PER_CUSTOMER).
        [--monthly-bytes SIZE]           SIZE: bytes, or 10MiB, 5GiB.
        [--queue-share N]
  customers weight ID N                  A customer's share of the workers (1 to 1000; default 1).
  customers duplicates ID [POLICY]       Show, or set, what an exact re-upload meets: accept
                                         (recorded), flag (marked) or reject (409 DUPLICATE_IMAGE).
  keys analyst [--name NAME]             Issue an analyst key (statistics only, no images).
  keys revoke KEY_ID                     Revoke a key at once.
  upload --customer KEY PATH...          Upload files and folders, with progress and a summary.
         [--concurrency N] [--wait]      --wait also waits until every image is processed.
         [--bulk]                        --bulk marks a backfill: processed when no interactive
                                         work waits, so other uploads go first.
         [--tus-over SIZE]               Files larger than SIZE (default 16MiB) go over tus: resumed
         [--tus-state FILE]              after a broken connection, and after the command is run
                                         again (unfinished uploads are kept in FILE, default
                                         ~/.cache/imagelake/tus-uploads.json).
  stats [--from DAY] [--to DAY]          Image counts and bytes as a table (bytes in decimal MB), or
        [--group-by day,customer,...]    --json / --csv for a program. Groups: day, customer,
        [--json | --csv]                 format, source, status.
  usage [--from DAY] [--to DAY]          Usage for billing per customer per day: images received,
        [--customer ID] [--json | --csv] processed and failed, bytes received and held, processing
                                         and CPU time, time per processor (default: last 30 days).
  queue [--json]                         Waiting and in-flight jobs by priority, and the customers
                                         with the most images waiting (and for how long).
  kafka produce --customer ID PATH...    Stream files and folders into the image topic (message-id =
        [--topic T] [--brokers B]        SHA-256, so twice lands once); larger than --claim-check-over
        [--claim-check-over BYTES]       (default 900000) go as claim checks through serve's lake
        [--allow-empty]                  (IMAGELAKE_LAKE_URL or IMAGELAKE_DATA_DIR); an empty lake is
                                         refused unless --allow-empty.
  kafka replay-dlq [--code CODE]         Produce dead letters again onto their original topics, with
        [--since DAY|3d] [--dry-run]     their message-id (what landed lands nothing twice); each once
        [--again] [--allow-empty]        (--again: also those replayed before). Prints a summary.
  retry --status failed [--code CODE]    Ask the running server to process failed images again from
        [--customer ID] [--since DAY|3d] their originals, as bulk work, with progress; the cursor is
        [--cursor-file FILE]             saved, so running it again goes on where it stopped.
  retention purge                        Run the retention purge now and print its receipt.
  retention audit [--json]               Scan lake, catalog and aggregates for anything past its
                                         window or orphaned; exits 1 if anything is found.
        [--allow-empty]                  Purge, audit and receipts read the catalog and the lake
                                         directly, with serve's settings (see Offline commands);
                                         they refuse an empty catalog or lake without this flag.
  retention verify-receipts              Check the receipts' hash chain; names any broken receipt.
  retention receipts                     The latest receipts.
  retention lifecycle [--apply]          Bucket lifecycle rules (S3, GCS) and Kafka retention.ms
                                         that back the purge up if the platform is down.
  processors list                        The configured processors, checked as serve checks them.
  processors test PATH IMAGE             Run one processor on one image and print its result. PATH:
        [--config JSON] [--out DIR]      a configured name, a .ts/.js module, a .py file (run with
        [--fields JSON] [--name N]       the SDK), an executable, or an http(s):// URL.
  reprocess --processor NAME             Ask the running server to re-run a processor over the images
        [--since DAY|3d] [--customer ID] in retention (e.g. after a new version), as background jobs,
        [--force] [--detach]             with progress; run it again to resume. --force: also images
                                         at this version.
  reprocess --status | --cancel RUN_ID   Follow or stop reprocess runs.
  webhooks list [--customer-id ID]       Customers' webhook endpoints, enabled or why disabled.
  webhooks create URL --customer-id ID   Register an endpoint for a customer; prints its secret
        [--events E1,E2]                 (shown once). Default events: image.processed,image.failed.
  webhooks deliveries WEBHOOK_ID         An endpoint's delivery log: status, attempts, last answer,
        [--status S]                     next attempt.
  webhooks replay WEBHOOK_ID             Send again the failed deliveries written in [--from, --to)
        --from TIME --to TIME            (ISO times).
  webhooks enable WEBHOOK_ID             Re-enable an endpoint that was disabled.

Client options: --url URL (or IMAGELAKE_URL, default http://127.0.0.1:8080),
                --token ADMIN_TOKEN (or IMAGELAKE_ADMIN_TOKEN) for customers, keys, stats, usage,
                queue, reprocess, retry and webhooks (retry also takes a customer's key: its own
                images).
Offline commands (retention, processors, kafka) read serve's own settings: IMAGELAKE_DATABASE_URL
                or IMAGELAKE_DATA_DIR (default ./data), IMAGELAKE_LAKE_URL, IMAGELAKE_PROCESSORS_FILE.
                They never create a catalog; only serve does.
Every command answers --help.
`;

/** The lines of HELP about one command: its own entries and their continuation lines. */
function commandHelp(command: string): string {
  const lines = HELP.split('\n');
  const picked: string[] = [];
  let inside = false;
  for (const line of lines) {
    if (/^ {2}[a-z]/.test(line)) inside = line.trim().split(/\s+/)[0] === command;
    else if (!/^ {3,}\S/.test(line)) inside = false;
    if (inside) picked.push(line);
  }
  if (picked.length === 0) return HELP;
  const footer = lines.slice(lines.findIndex((l) => l.startsWith('Client options')));
  return `Usage: imagelake ${command} ...\n\n${picked.join('\n')}\n\n${footer.join('\n')}`;
}

function serverUrl(values: { url?: string }): string {
  return values.url ?? process.env.IMAGELAKE_URL ?? 'http://127.0.0.1:8080';
}

function adminClient(values: { url?: string; token?: string }): ApiClient {
  const token = values.token ?? process.env.IMAGELAKE_ADMIN_TOKEN;
  if (!token)
    fail('this command needs the admin token: --token or IMAGELAKE_ADMIN_TOKEN (printed at first start)');
  return new ApiClient(serverUrl(values), token);
}

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message);
    throw error;
  }
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { roles: { type: 'string' } } });
  const roles = (values.roles ?? ROLES.join(',')).split(',').map((r) => r.trim()) as Role[];
  const unknown = roles.filter((r) => !ROLES.includes(r));
  if (unknown.length) fail(`unknown role ${unknown.join(', ')}; roles are ${ROLES.join(', ')}`);
  const config = readConfig();
  const server = await startServer(config, { roles });
  if (server.generatedAdminToken) {
    // Printed once: only its hash is stored, so this is the one chance to copy it.
    console.log(
      `\n  Admin token (shown only now; store it somewhere safe):\n\n    IMAGELAKE_ADMIN_TOKEN=${server.generatedAdminToken}\n`,
    );
  }
  let stopping = false;
  const shutdown = async (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    console.error(`${why}: finishing work in hand, then stopping`);
    await server.stop();
    // The last spans are still buffered: sent now, or the last images' traces end early.
    await stopTracing();
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // Its catalog gone, the process would only fail every request and retry forever: it stops, and
  // exits 1, so that a supervisor (systemd, Kubernetes) starts it again.
  void server.catalogEnded?.then(() => shutdown('the embedded PostgreSQL ended', 1));
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    console.log(rest[0] ? commandHelp(rest[0]) : HELP);
    return;
  }
  // Before parsing: each command's options are strict, and --help must work with any of them.
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(commandHelp(command));
    return;
  }
  if (command === 'serve') return serve(rest);

  if (command === 'kafka') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        customer: { type: 'string' },
        topic: { type: 'string' },
        brokers: { type: 'string' },
        'claim-check-over': { type: 'string' },
        quiet: { type: 'boolean' },
        'allow-empty': { type: 'boolean' },
        code: { type: 'string' },
        since: { type: 'string' },
        'dry-run': { type: 'boolean' },
        again: { type: 'boolean' },
      },
    });
    const [sub, ...paths] = positionals;
    if (values.brokers) process.env.IMAGELAKE_KAFKA_BROKERS = values.brokers;
    // Loaded for this command only: the Kafka client is heap a `serve` without Kafka never needs.
    const { produce, replayDlq } = await import('./commands/kafka.ts');
    if (sub === 'replay-dlq') {
      const since = values.since === undefined ? undefined : parseSince(values.since);
      if (values.since !== undefined && !since)
        fail(`--since ${values.since} is neither a date (2026-11-20) nor a duration (3d)`);
      process.exitCode = await replayDlq(readConfig(), {
        code: values.code,
        since,
        dryRun: Boolean(values['dry-run']),
        again: Boolean(values.again),
        allowEmpty: Boolean(values['allow-empty']),
      });
      return;
    }
    if (sub !== 'produce' || !values.customer || paths.length === 0)
      fail(
        'usage: imagelake kafka produce --customer ID [--topic T] [--brokers HOST:PORT] PATH... | imagelake kafka replay-dlq [--code CODE] [--since DAY|3d] [--dry-run]',
      );
    const config = readConfig();
    const claimCheckOver = Number(values['claim-check-over'] ?? 900_000);
    if (!Number.isFinite(claimCheckOver) || claimCheckOver < 0)
      fail('--claim-check-over takes a number of bytes');
    process.exitCode = await produce(config, paths, {
      customerId: values.customer,
      topic: values.topic ?? config.kafka.topics[0]!,
      claimCheckOver,
      quiet: Boolean(values.quiet),
      allowEmpty: Boolean(values['allow-empty']),
    });
    return;
  }

  if (command === 'processors') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        out: { type: 'string' },
        fields: { type: 'string' },
        name: { type: 'string' },
        version: { type: 'string' },
        timeout: { type: 'string' },
      },
    });
    const [sub, target, image] = positionals;
    const config = readConfig();
    if (sub === 'list') {
      const { Processors } = await import('../processing/processors/chain.ts');
      const pino = (await import('pino')).default;
      const processors = await Processors.open(config.processors, {
        log: pino({ level: 'warn' }, pino.destination(2)),
        source: config.processorsSource,
      }).catch((error: Error) => fail(error.message));
      console.log(JSON.stringify(processors.describe(), null, 2));
      await processors.close();
      return;
    }
    if (sub !== 'test' || !target || !image)
      fail(
        'usage: imagelake processors test PATH IMAGE [--config JSON] [--out DIR] | imagelake processors list',
      );
    process.exitCode = await testProcessor(config, target, image, values);
    return;
  }

  if (command === 'reprocess') {
    const { values } = parseArgs({
      args: rest,
      options: {
        processor: { type: 'string' },
        since: { type: 'string' },
        customer: { type: 'string' },
        force: { type: 'boolean' },
        detach: { type: 'boolean' },
        status: { type: 'boolean' },
        cancel: { type: 'string' },
        url: { type: 'string' },
        token: { type: 'string' },
      },
    });
    process.exitCode = await reprocessCommand(adminClient(values), values);
    return;
  }

  if (command === 'retry') {
    const { values } = parseArgs({
      args: rest,
      options: {
        status: { type: 'string' },
        code: { type: 'string' },
        customer: { type: 'string' },
        since: { type: 'string' },
        'cursor-file': { type: 'string' },
        url: { type: 'string' },
        token: { type: 'string' },
      },
    });
    const since = values.since === undefined ? undefined : parseSince(values.since);
    if (values.since !== undefined && !since)
      fail(`--since ${values.since} is neither a date (2026-11-20) nor a duration (3d)`);
    process.exitCode = await retryCommand(adminClient(values), { ...values, since });
    return;
  }

  if (command === 'retention') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { apply: { type: 'boolean' }, json: { type: 'boolean' }, 'allow-empty': { type: 'boolean' } },
    });
    // Loaded for this command only: it brings the AWS SDK (S3 lifecycle rules).
    const { retentionCommand } = await import('./commands/retention.ts');
    process.exitCode = await retentionCommand(readConfig(), positionals[0], values);
    return;
  }

  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      customer: { type: 'string' },
      concurrency: { type: 'string' },
      wait: { type: 'boolean' },
      quiet: { type: 'boolean' },
      bulk: { type: 'boolean' },
      name: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'group-by': { type: 'string' },
      json: { type: 'boolean' },
      csv: { type: 'boolean' },
      'uploads-per-second': { type: 'string' },
      'tus-over': { type: 'string' },
      'tus-state': { type: 'string' },
      'bytes-per-second': { type: 'string' },
      'monthly-images': { type: 'string' },
      'monthly-bytes': { type: 'string' },
      'queue-share': { type: 'string' },
      'customer-id': { type: 'string' },
      events: { type: 'string' },
      status: { type: 'string' },
    },
  });
  const url = serverUrl(values);
  const admin = () => adminClient(values);
  const [sub, ...args] = positionals;

  switch (command) {
    case 'customers':
      return customersCommand(sub, args, values, admin);
    case 'webhooks':
      return webhooksCommand(sub, args, values, admin);
    case 'keys': {
      if (sub === 'analyst') {
        const k = await admin().json<{ id: string; apiKey: string }>('POST', '/v1/analyst-keys', {
          name: values.name ?? 'analyst',
        });
        console.log(`analyst key ${k.id}\n  key: ${k.apiKey}   (shown only now)`);
        return;
      }
      if (sub === 'revoke' && args[0]) {
        await admin()
          .request('DELETE', `/v1/keys/${args[0]}`)
          .then(async (r) => {
            if (r.status !== 204) fail(`revoke failed: ${await r.text()}`);
          });
        console.log(`revoked ${args[0]}`);
        return;
      }
      return fail('usage: imagelake keys analyst [--name NAME] | keys revoke KEY_ID');
    }
    case 'upload': {
      const key = values.customer ?? process.env.IMAGELAKE_API_KEY;
      if (!key) fail('upload needs the customer API key: --customer KEY (or IMAGELAKE_API_KEY)');
      if (positionals.length === 0) fail('usage: imagelake upload --customer KEY PATH...');
      const concurrency = Number(values.concurrency ?? 4);
      if (!Number.isInteger(concurrency) || concurrency < 1) fail('--concurrency takes a whole number');
      process.exitCode = await upload(new ApiClient(url, key), positionals, {
        concurrency,
        wait: Boolean(values.wait),
        quiet: Boolean(values.quiet),
        bulk: Boolean(values.bulk),
        tusOver: values['tus-over'] === undefined ? undefined : tusOver(values['tus-over']),
        tusState: values['tus-state'],
      });
      return;
    }
    case 'stats': {
      if (values.json && values.csv) fail('stats prints --json or --csv, not both');
      const query = new URLSearchParams();
      if (values.from) query.set('from', values.from);
      if (values.to) query.set('to', values.to);
      const groupBy = values['group-by'] ?? 'day,customer,format';
      query.set('groupBy', groupBy);
      // The groups first, as asked (a customer's name beside its id), then the counts.
      const leading = groupBy
        .split(',')
        .flatMap((g) => (g === 'customer' ? ['customer', 'customerName'] : [g]));
      const { rows } = await admin().json<{ rows: Array<Record<string, unknown>> }>(
        'GET',
        `/v1/stats?${query}`,
      );
      printRows(rows, leading, values, 'No images in that range.');
      return;
    }
    case 'usage':
      if (values.json && values.csv) fail('usage prints --json or --csv, not both');
      return usageCommand(values, admin);
    case 'queue':
      return queueCommand(values, admin);
    default:
      fail(`unknown command "${command}"; run imagelake help`);
  }
}

main().catch((error) => {
  if (error instanceof StorageError) {
    console.error(`imagelake: ${error.code}: ${error.message}`);
    process.exit(2);
  }
  console.error(`imagelake: ${(error as Error).message}`);
  process.exit(1);
});

function tusOver(value: string): number {
  const bytes = parseBytes(value);
  if (bytes === undefined) fail('--tus-over takes a size such as 16MiB (0: every file over tus)');
  return bytes!;
}
