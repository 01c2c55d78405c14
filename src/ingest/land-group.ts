// Group commit of landings: the catalog's side of many landings in one transaction, for a source that
// lands many images at once (Kafka). Each landing costs a transaction of about ten statements and a
// WAL flush alone; in a group, one statement of each kind serves every image, and one flush.
import { addReceived } from '../analytics/usage.ts';
import { duplicatePolicyOf } from '../catalog/customers.ts';
import type { Db } from '../catalog/database.ts';
import { firstWithChecksum, insertImages } from '../catalog/images.ts';
import { lockContent } from '../catalog/locks.ts';
import { enqueueMany, reserveVirtualTimes } from '../catalog/queue.ts';
import { countLanding, utcMonth } from '../catalog/quota-usage.ts';
import type { DuplicatePolicy, ImageRow, JobPriority, NewImage } from '../catalog/schema.ts';
import { utcDay } from '../clock.ts';
import type { Metrics } from '../observability/metrics.ts';
import { activeContext, contextOf, inContext, inSpan, linkTo } from '../observability/tracing.ts';
import { announceImages } from '../webhooks/events.ts';

/** A landing whose bytes are durable in the lake, waiting for its catalog row. */
export interface Recording {
  row: NewImage & { id: string; customer_id: string; checksum: string; bytes: number; received_at: Date };
  priority: JobPriority;
  /** The landing span's traceparent, which its job continues. */
  traceparent: string | null;
  /** The customer's monthly quota (Infinity: none). */
  quota: { images: number; bytes: number };
  /** Its job's virtual time, once reserved. */
  vt?: number;
}

export interface LandingGroupDeps {
  db: Db;
  maxAttempts: number;
  /** The platform's retention window: an image.received webhook says when the image expires. */
  retentionMs: number;
  metrics: Pick<Metrics, 'landingGroups'>;
}

/** Images in one group at most: one statement inserts them all, and a fallback records each alone. */
const MAX_GROUP = 64;

/** A landing waiting for its group's transaction. */
interface Member {
  recording: Recording;
  alone: () => Promise<ImageRow>;
  resolve: (image: ImageRow) => void;
  reject: (error: unknown) => void;
}

/**
 * One transaction at a time per customer and process: a customer's landings that finish their
 * lake writes while its transaction runs wait, and the next transaction records all of them (group
 * commit, as PostgreSQL's own WAL flush). The first landing when nothing of its customer runs
 * starts at once, so a lone landing waits for nothing. Customers never share a transaction: one
 * customer's locks (its quota's, its duplicates'), refusals and fallbacks never hold up another's
 * landings, and their groups commit side by side.
 *
 * A group is all or nothing. When it cannot commit (the customer's duplicates policy refuses an
 * image, its quota would go over, an idempotency key landed before, the catalog fails), nothing of
 * it is recorded and each of its landings is recorded alone, with the answers a landing alone gets;
 * the virtual times reserved for the group go with them.
 */
export class LandingGroup {
  private readonly deps: LandingGroupDeps;
  /** The landings waiting, by customer, for each customer whose transactions are running. */
  private readonly waiting = new Map<string, Member[]>();

  constructor(deps: LandingGroupDeps) {
    this.deps = deps;
  }

  /**
   * Records a landing with the others of its customer waiting; resolves with its row once its
   * group committed. `alone` records it in a transaction of its own, with every answer a landing
   * can get (refused as a duplicate, over its quota, landed before under its key): what its group
   * falls back to.
   */
  record(recording: Recording, alone: () => Promise<ImageRow>): Promise<ImageRow> {
    // Run from the drain, in the context of whichever landing started it: bound to its own here.
    const context = activeContext();
    return new Promise((resolve, reject) => {
      const member = { recording, alone: () => inContext(context, alone), resolve, reject };
      const customerId = recording.row.customer_id;
      const queue = this.waiting.get(customerId);
      if (queue) {
        queue.push(member);
        return;
      }
      this.waiting.set(customerId, [member]);
      void this.drain(customerId);
    });
  }

  private async drain(customerId: string): Promise<void> {
    const queue = this.waiting.get(customerId)!;
    try {
      while (queue.length > 0) {
        const group = queue.splice(0, MAX_GROUP);
        const recordings = group.map((member) => member.recording);
        try {
          const images = await this.commit(recordings);
          this.deps.metrics.landingGroups.observe({ outcome: 'committed' }, group.length);
          for (const [i, member] of group.entries()) member.resolve(images[i]!);
        } catch {
          this.deps.metrics.landingGroups.observe({ outcome: 'alone' }, group.length);
          await Promise.all(group.map((member) => member.alone().then(member.resolve, member.reject)));
        }
      }
    } finally {
      // The queue is empty here (checked with no wait since): the customer's next landing starts anew.
      this.waiting.delete(customerId);
    }
  }

  /**
   * The group's transaction, in a span of its own linked to each landing's: its statements belong
   * to every landing of the group, not to the trace of the one that happened to start it.
   */
  private commit(recordings: Recording[]): Promise<ImageRow[]> {
    return inSpan(
      'imagelake.land group',
      {
        parent: contextOf(null),
        links: recordings.flatMap((r) => linkTo(r.traceparent)),
        attributes: { 'imagelake.land.group_size': recordings.length },
      },
      () => recordTogether(this.deps, recordings),
    );
  }
}

/** A group its transaction cannot take as a whole; its landings are recorded alone. */
class RecordAlone extends Error {}

async function recordTogether(deps: LandingGroupDeps, recordings: Recording[]): Promise<ImageRow[]> {
  const { db } = deps;
  // The virtual times, one statement per customer and priority before the transaction, for the
  // reason reserveVirtualTime gives.
  for (const [, members] of groupBy(
    recordings.filter((r) => r.vt === undefined),
    (r) => `${r.row.customer_id} ${r.priority}`,
  )) {
    const first = members[0]!;
    const vts = await reserveVirtualTimes(db, first.row.customer_id, first.priority, members.length);
    members.forEach((r, k) => {
      r.vt = vts[k];
    });
  }
  return db.transaction().execute(async (trx) => {
    const flagged = await duplicates(trx, recordings);
    const images = await insertImages(
      trx,
      recordings.map((r, i) => ({ ...r.row, duplicate_flagged: flagged[i]! })),
    );
    // In its landing's context: the image.received deliveries keep the landing's traceparent, so
    // their attempts join the image's trace, as a landing alone's do.
    await announceImages(
      trx,
      'image.received',
      images.map((image, i) => ({
        id: image.id,
        customerId: image.customer_id,
        at: image.received_at,
        traceparent: recordings[i]!.traceparent,
      })),
      deps.retentionMs,
    );
    await enqueueMany(
      trx,
      recordings.map((r) => ({
        imageId: r.row.id,
        customerId: r.row.customer_id,
        priority: r.priority,
        traceparent: r.traceparent,
        vt: r.vt!,
      })),
      deps.maxAttempts,
    );
    // Counted last, as a landing alone counts: the quota's lock and the counters' rows are held to
    // the commit. Each customer's month once, in one order, so two groups never wait in a circle.
    for (const [, members] of groupBy(
      recordings,
      (r) => `${r.row.customer_id} ${utcMonth(r.row.received_at)}`,
    )) {
      const first = members[0]!;
      const counted = await countLanding(
        trx,
        first.row.customer_id,
        first.row.received_at,
        sum(members, (r) => r.row.bytes),
        first.quota,
        members.length,
      );
      if (!counted) throw new RecordAlone('a quota would go over: each image is counted alone');
    }
    for (const [, members] of groupBy(
      recordings,
      (r) => `${r.row.customer_id} ${utcDay(r.row.received_at)}`,
    )) {
      const first = members[0]!;
      await addReceived(trx, {
        customerId: first.row.customer_id,
        receivedAt: first.row.received_at,
        bytes: sum(members, (r) => r.row.bytes),
        images: members.length,
      });
    }
    return images;
  });
}

/**
 * Which images of the group their customers' duplicates policy flags, as a landing alone decides
 * (Lander.checkDuplicate): an image matches one landed before or one earlier in the group. One the
 * policy refuses sends the group to be recorded alone, where it is refused with DUPLICATE_IMAGE.
 */
async function duplicates(trx: Db, recordings: Recording[]): Promise<boolean[]> {
  const policies = new Map<string, DuplicatePolicy>();
  for (const customerId of new Set(recordings.map((r) => r.row.customer_id)))
    policies.set(customerId, await duplicatePolicyOf(trx, customerId));
  const checked = recordings.filter((r) => policies.get(r.row.customer_id) !== 'accept');
  if (checked.length === 0) return recordings.map(() => false);
  // Every content lock of the group in one order, before any quota lock: the order a landing alone
  // takes its two in, so no two transactions wait for each other in a circle.
  const keys = new Map(checked.map((r) => [`${r.row.customer_id}:${r.row.checksum}`, r.row]));
  for (const key of [...keys.keys()].sort()) {
    const row = keys.get(key)!;
    await lockContent(trx, row.customer_id, row.checksum);
  }
  const seen = new Set<string>();
  const flagged: boolean[] = [];
  for (const r of recordings) {
    const policy = policies.get(r.row.customer_id)!;
    if (policy === 'accept') {
      flagged.push(false);
      continue;
    }
    const key = `${r.row.customer_id}:${r.row.checksum}`;
    const found =
      seen.has(key) || (await firstWithChecksum(trx, r.row.customer_id, r.row.checksum)) !== undefined;
    seen.add(key);
    if (found && policy === 'reject') throw new RecordAlone('a duplicate is refused alone');
    flagged.push(found);
  }
  return flagged;
}

function groupBy<T>(items: T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const key of [...new Set(items.map(keyOf))].sort()) groups.set(key, []);
  for (const item of items) groups.get(keyOf(item))!.push(item);
  return groups;
}

function sum<T>(items: T[], of: (item: T) => number): number {
  return items.reduce((total, item) => total + of(item), 0);
}
