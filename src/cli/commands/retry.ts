import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ApiClient } from '../client.ts';
import { progressBar } from '../progress.ts';

export interface RetryFlags {
  status?: string;
  code?: string;
  customer?: string;
  since?: Date;
  'cursor-file'?: string;
}

interface Step {
  retried: number;
  cursor?: string;
  remaining: number;
  outstanding: number;
}

/** Where the cursor of a bulk retry with this scope is kept between runs. */
function cursorFile(client: ApiClient, flags: RetryFlags): string {
  if (flags['cursor-file']) return flags['cursor-file'];
  const scope = JSON.stringify([client.baseUrl, flags.code, flags.customer, flags.since?.toISOString()]);
  const id = createHash('sha256').update(scope).digest('hex').slice(0, 16);
  const state = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(state, 'imagelake', `retry-${id}.cursor`);
}

/**
 * `imagelake retry --status failed`: queues the failed images in scope again, from their stored
 * originals, as bulk work (uploads go first), a step at a time (POST /v1/retries), never more than
 * the server's window outstanding. The cursor is saved after each step: run the same command again
 * after Ctrl-C or a crash and it goes on from there; it is removed once everything is queued.
 */
export async function retryCommand(client: ApiClient, flags: RetryFlags): Promise<number> {
  if (flags.status !== 'failed') {
    console.error(
      'imagelake: usage: imagelake retry --status failed [--code CODE] [--customer ID] [--since DAY|3d]',
    );
    return 2;
  }
  const file = cursorFile(client, flags);
  let cursor = (await readFile(file, 'utf8').catch(() => '')).trim() || undefined;
  if (cursor) console.error(`Resuming after the cursor in ${file}.`);
  const scope = {
    ...(flags.code ? { code: flags.code } : {}),
    ...(flags.customer ? { customerId: flags.customer } : {}),
    ...(flags.since ? { since: flags.since.toISOString() } : {}),
  };
  const bar = progressBar('retry [{bar}] {value}/{total}  queued {outstanding}');
  let stop = false;
  process.once('SIGINT', () => {
    stop = true;
  });
  let retried = 0;
  let step: Step | undefined;
  let lastReport = 0;
  while (!stop) {
    step = await client.json<Step>('POST', '/v1/retries', {
      ...scope,
      ...(cursor ? { cursor } : {}),
      limit: 100,
    });
    retried += step.retried;
    if (step.cursor && step.cursor !== cursor) {
      cursor = step.cursor;
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, `${cursor}\n`);
    }
    if (!bar && (step.remaining === 0 || Date.now() - lastReport > 2000)) {
      lastReport = Date.now();
      console.error(`${retried} queued again, ${step.remaining} to go`);
    }
    if (retried + step.remaining > 0) {
      if (!bar?.isActive) bar?.start(retried + step.remaining, retried, { outstanding: step.outstanding });
      bar?.setTotal(retried + step.remaining);
      bar?.update(retried, { outstanding: step.outstanding });
    }
    if (step.remaining === 0) break;
    // The window is full: wait for the workers to take some.
    if (step.retried === 0) await new Promise((r) => setTimeout(r, 1000));
  }
  bar?.stop();
  if (stop) {
    console.error(`Stopped after ${retried} images; run the same command again to go on from ${file}.`);
    return 130;
  }
  await rm(file, { force: true });
  console.log(
    `${retried} failed images queued again as bulk work; GET /v1/failures (or the dashboard) shows what still fails.`,
  );
  return 0;
}
