import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/catalog/embedded.ts';
import { jpeg } from '../fixtures/images.ts';
import { ADMIN, api, createCustomer, settled, spawnServer, upload } from './harness.ts';

/**
 * A landing whose transaction committed while the answer to its COMMIT was lost (the connection cut
 * between the two: PostgreSQL restarting, a network blip). The landing must not take that for
 * "nothing recorded" and delete the image's bytes: the row is there, and the image is processed from
 * those bytes. A proxy between the api process and PostgreSQL cuts the answer to one COMMIT.
 */

/**
 * Frontend messages of the PostgreSQL protocol, read from a session's client side: the statements a
 * transaction ran (simple queries, and prepared ones by their names), to find the COMMIT of one that
 * inserted an image.
 */
class SessionReader {
  private buffer = Buffer.alloc(0);
  private started = false;
  private readonly named = new Map<string, string>();
  private inserted = false;

  /** Feeds bytes from the client; returns true when they end with the COMMIT of an image's insert. */
  feed(chunk: Buffer): boolean {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    let commit = false;
    for (;;) {
      if (!this.started) {
        if (this.buffer.length < 4) break;
        const length = this.buffer.readInt32BE(0);
        if (this.buffer.length < length) break;
        this.buffer = this.buffer.subarray(length);
        this.started = true;
        continue;
      }
      if (this.buffer.length < 5) break;
      const type = String.fromCharCode(this.buffer[0]!);
      const length = this.buffer.readInt32BE(1);
      if (this.buffer.length < 1 + length) break;
      const body = this.buffer.subarray(5, 1 + length);
      this.buffer = this.buffer.subarray(1 + length);
      let text: string | undefined;
      if (type === 'Q') text = body.toString('utf8', 0, body.indexOf(0));
      if (type === 'P') {
        const nameEnd = body.indexOf(0);
        const name = body.toString('utf8', 0, nameEnd);
        text = body.toString('utf8', nameEnd + 1, body.indexOf(0, nameEnd + 1));
        if (name) this.named.set(name, text);
      }
      if (type === 'B') {
        const portalEnd = body.indexOf(0);
        const name = body.toString('utf8', portalEnd + 1, body.indexOf(0, portalEnd + 1));
        text = this.named.get(name) ?? text;
      }
      if (text === undefined) continue;
      const statement = text.trim().toLowerCase();
      if (statement === 'begin') this.inserted = false;
      if (statement.startsWith('insert into "images"')) this.inserted = true;
      if (statement === 'commit' && this.inserted) commit = true;
    }
    return commit;
  }
}

/** A TCP proxy to PostgreSQL that, when armed, cuts the answer to the next COMMIT of an image's insert. */
class CommitCutter {
  private server: net.Server | undefined;
  private armed = false;
  private refuseUntil = 0;
  private refuseMs = 0;
  private readonly sessions = new Set<net.Socket>();
  cuts = 0;
  port = 0;

  async start(target: number): Promise<void> {
    this.server = net.createServer((client) => {
      // Refusing for a while after a cut: what follows the lost answer finds the catalog away too.
      if (Date.now() < this.refuseUntil) {
        client.destroy();
        return;
      }
      const upstream = net.connect(target, '127.0.0.1');
      this.sessions.add(client);
      client.on('close', () => this.sessions.delete(client));
      const reader = new SessionReader();
      let cut = false;
      client.on('data', (chunk: Buffer) => {
        if (cut) return;
        const commit = reader.feed(chunk);
        upstream.write(chunk);
        if (commit && this.armed) {
          this.armed = false;
          cut = true;
          this.cuts++;
          // The COMMIT reaches PostgreSQL and runs; its answer never reaches the client. With a
          // refusal to follow, every session goes, as when PostgreSQL restarts.
          if (this.refuseMs > 0) this.refuseUntil = Date.now() + 300 + this.refuseMs;
          setTimeout(() => {
            client.destroy();
            upstream.destroy();
            if (this.refuseMs > 0) for (const session of this.sessions) session.destroy();
          }, 300);
        }
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!cut) client.write(chunk);
      });
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /**
   * Cuts the answer to the next COMMIT of an image's insert. With `refuseMs`, every session goes
   * with it and new ones are refused for that long.
   */
  arm(refuseMs: number): void {
    this.armed = true;
    this.refuseMs = refuseMs;
  }

  stop(): void {
    this.server?.close();
  }
}

let root: string;
let postgres: EmbeddedDatabase;
const cutter = new CommitCutter();
const children: ChildProcess[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imagelake-commit-lost-'));
  postgres = await startEmbeddedPostgres(join(root, 'pg'), pino({ level: 'silent' }), 0);
  await cutter.start(Number(new URL(postgres.url).port));
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  cutter.stop();
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
});

function settings(): Record<string, string> {
  return {
    IMAGELAKE_LAKE_URL: `file://${join(root, 'lake')}`,
    IMAGELAKE_DATA_DIR: join(root, 'data'),
    IMAGELAKE_ADMIN_TOKEN: ADMIN,
    IMAGELAKE_POLL_INTERVAL: '200ms',
  };
}

/** The api process, its catalog behind the proxy. */
async function apiProcess(): Promise<string> {
  const through = new URL(postgres.url);
  through.port = String(cutter.port);
  const server = await spawnServer({ ...settings(), IMAGELAKE_DATABASE_URL: through.toString() }, ['api']);
  children.push(server.child);
  return server.url;
}

/**
 * A worker straight on PostgreSQL, started once the landing has answered: what it processes is what
 * the lake holds by then (one running during the landing processed the image before its bytes went).
 */
async function processedWithAWorker(url: string, key: string, id: string): Promise<any> {
  const worker = await spawnServer({ ...settings(), IMAGELAKE_DATABASE_URL: postgres.url }, ['worker']);
  children.push(worker.child);
  try {
    return await settled(url, key, id);
  } finally {
    const exited = new Promise((resolve) => worker.child.once('exit', resolve));
    worker.child.kill('SIGTERM');
    await exited;
  }
}

describe('a landing whose COMMIT answer is lost', () => {
  let url: string;
  before(async () => {
    url = await apiProcess();
  });

  it('without an idempotency key: answers 202 with the row that committed, and the image is processed from its bytes', async () => {
    const customer = await createCustomer(url, 'Lost answer');
    cutter.arm(0);
    const landed = await upload(url, customer.apiKey, await jpeg({ width: 64, height: 48, seed: 8100 }));
    assert.equal(cutter.cuts, 1, 'the proxy cut one COMMIT answer');
    assert.equal(landed.status, 202, JSON.stringify(landed.body));
    const image = await processedWithAWorker(url, customer.apiKey, landed.body.id);
    assert.equal(image.status, 'processed', JSON.stringify(image.error));
    const { body } = await api(url, customer.apiKey, 'GET', '/v1/images?limit=10');
    assert.equal(body.images.length, 1, 'one image, not two');
  });

  it('with the catalog away after the cut: 503, and the retry with the same key answers the image that committed, processed', async () => {
    const customer = await createCustomer(url, 'Lost answer, then away');
    const bytes = await jpeg({ width: 64, height: 48, seed: 8200 });
    const headers = { 'idempotency-key': 'lost-commit-1' };
    cutter.arm(2000);
    const first = await upload(url, customer.apiKey, bytes, headers);
    assert.equal(cutter.cuts, 2, 'the proxy cut one more COMMIT answer');
    assert.equal(first.status, 503, JSON.stringify(first.body));
    assert.equal(first.body.error.code, 'CATALOG_UNAVAILABLE');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const again = await upload(url, customer.apiKey, bytes, headers);
    assert.ok([200, 202].includes(again.status), JSON.stringify(again.body));
    const image = await processedWithAWorker(url, customer.apiKey, again.body.id);
    assert.equal(image.status, 'processed', JSON.stringify(image.error));
  });
});
