import { sql } from 'kysely';
import { counterSlot } from '../catalog/counter-slots.ts';
import type { Db } from '../catalog/database.ts';
import { utcDay } from '../clock.ts';

/**
 * Owner of analytics.usage_daily: usage for billing, per customer per UTC day. Every statement on
 * the table is here. Each count is added in the transaction that already records what it counts
 * (landing, the outcome), so a retry or a second worker never counts twice; the bytes held at the
 * end of a day are a snapshot the scheduler takes once the day is over. Holds no image data and is
 * kept for the statistics window. A day's row of a customer is split over slots
 * (catalog/counter-slots.ts) so concurrent landings and outcomes do not queue on one row; every
 * read here sums them.
 */

export interface UsageRow {
  day: string;
  customerId: string;
  imagesReceived: number;
  bytesReceived: number;
  imagesProcessed: number;
  imagesFailed: number;
  processingMs: number;
  /** CPU seconds of the worker thread that ran the built-in pipeline. */
  cpuSeconds: number;
  /** By company processor: milliseconds it ran on this customer's images. */
  processorMs: Record<string, number>;
  /** Bytes of originals in the lake at the end of the day; null until the day's snapshot is taken. */
  bytesHeld: number | null;
}

/**
 * One landed image (or `images` of a customer's day landed together, `bytes` in all), in the
 * landing's transaction.
 */
export async function addReceived(
  db: Db,
  u: { customerId: string; receivedAt: Date; bytes: number; images?: number },
): Promise<void> {
  await sql`
    insert into analytics.usage_daily as u (day, customer_id, slot, images_received, bytes_received)
    values (${utcDay(u.receivedAt)}, ${u.customerId}, ${counterSlot}, ${u.images ?? 1}::int, ${u.bytes})
    on conflict (day, customer_id, slot) do update set
      images_received = u.images_received + excluded.images_received,
      bytes_received = u.bytes_received + excluded.bytes_received`.execute(db);
}

/** One outcome (processed or failed), in the outcome's transaction. Counted on the outcome's day. */
export async function addOutcome(
  db: Db,
  u: {
    customerId: string;
    processedAt: Date;
    outcome: 'processed' | 'failed';
    processingMs: number;
    cpuMs: number;
    processorMs: Record<string, number>;
  },
): Promise<void> {
  const processed = u.outcome === 'processed' ? 1 : 0;
  await sql`
    insert into analytics.usage_daily as u (day, customer_id, slot, images_processed, images_failed, processing_ms, cpu_ms, processor_ms)
    values (${utcDay(u.processedAt)}, ${u.customerId}, ${counterSlot}, ${processed}, ${1 - processed}, ${Math.round(u.processingMs)},
      ${u.cpuMs}, ${JSON.stringify(u.processorMs)}::jsonb)
    on conflict (day, customer_id, slot) do update set
      images_processed = u.images_processed + excluded.images_processed,
      images_failed = u.images_failed + excluded.images_failed,
      processing_ms = u.processing_ms + excluded.processing_ms,
      cpu_ms = u.cpu_ms + excluded.cpu_ms,
      processor_ms = (
        select coalesce(jsonb_object_agg(k, coalesce((u.processor_ms ->> k)::float8, 0) + coalesce((excluded.processor_ms ->> k)::float8, 0)), '{}')
        from (select jsonb_object_keys(u.processor_ms || excluded.processor_ms) as k) keys)`.execute(db);
}

/** A reprocess's run of a processor: its time on the customer's usage (no image is counted again). */
export async function addProcessorTime(
  db: Db,
  u: { customerId: string; at: Date; processorMs: Record<string, number> },
): Promise<void> {
  if (Object.keys(u.processorMs).length === 0) return;
  await sql`
    insert into analytics.usage_daily as u (day, customer_id, slot, processor_ms)
    values (${utcDay(u.at)}, ${u.customerId}, ${counterSlot}, ${JSON.stringify(u.processorMs)}::jsonb)
    on conflict (day, customer_id, slot) do update set
      processor_ms = (
        select coalesce(jsonb_object_agg(k, coalesce((u.processor_ms ->> k)::float8, 0) + coalesce((excluded.processor_ms ->> k)::float8, 0)), '{}')
        from (select jsonb_object_keys(u.processor_ms || excluded.processor_ms) as k) keys)`.execute(db);
}

/**
 * The end-of-day snapshot of bytes held, per customer. Idempotent: a day already snapshotted keeps
 * its first value (later purges must not rewrite what was held at the time). Kept in slot 0 alone,
 * so the sum over the slots is the snapshot.
 */
export async function recordHeld(
  db: Db,
  day: string,
  held: Array<{ customerId: string; bytes: number }>,
): Promise<void> {
  if (held.length === 0) return;
  await sql`
    insert into analytics.usage_daily as u (day, customer_id, bytes_held)
    select ${day}::date, h.customer_id, h.bytes
    from unnest(${held.map((h) => h.customerId)}::uuid[], ${held.map((h) => h.bytes)}::bigint[]) as h(customer_id, bytes)
    on conflict (day, customer_id, slot) do update set bytes_held = excluded.bytes_held
    where u.bytes_held is null`.execute(db);
}

/** A day's row of a customer, its slots summed (processor_ms as each slot's, added by addProcessorMs). */
const USAGE_SUMS = sql`sum(images_received)::bigint as images_received, sum(bytes_received)::bigint as bytes_received,
  sum(images_processed)::bigint as images_processed, sum(images_failed)::bigint as images_failed,
  sum(processing_ms)::bigint as processing_ms, sum(cpu_ms)::float8 as cpu_ms,
  jsonb_agg(processor_ms) as processor_ms, sum(bytes_held)::bigint as bytes_held`;

/** The slots' milliseconds by processor, added. */
function addProcessorMs(slots: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const slot of slots) for (const [k, v] of Object.entries(slot)) out[k] = (out[k] ?? 0) + Number(v);
  return out;
}

/** Usage rows from `from` to `to` (inclusive days), of one customer or all, oldest first. */
export async function usageBetween(
  db: Db,
  range: { from: string; to: string; customerId?: string },
): Promise<UsageRow[]> {
  const rows = await sql<{
    day: string;
    customer_id: string;
    images_received: string;
    bytes_received: string;
    images_processed: string;
    images_failed: string;
    processing_ms: string;
    cpu_ms: number;
    processor_ms: Record<string, number>[];
    bytes_held: string | null;
  }>`
    select day::text as day, customer_id, ${USAGE_SUMS}
    from analytics.usage_daily
    where day between ${range.from}::date and ${range.to}::date
      ${range.customerId ? sql`and customer_id = ${range.customerId}` : sql``}
    group by day, customer_id
    order by day, customer_id
    limit 100000`.execute(db);
  return rows.rows.map((r) => ({
    day: r.day,
    customerId: r.customer_id,
    imagesReceived: Number(r.images_received),
    bytesReceived: Number(r.bytes_received),
    imagesProcessed: Number(r.images_processed),
    imagesFailed: Number(r.images_failed),
    processingMs: Number(r.processing_ms),
    cpuSeconds: Math.round(Number(r.cpu_ms)) / 1000,
    processorMs: Object.fromEntries(
      Object.entries(addProcessorMs(r.processor_ms)).map(([k, v]) => [k, Math.round(v * 10) / 10]),
    ),
    bytesHeld: r.bytes_held === null ? null : Number(r.bytes_held),
  }));
}

/** Deletes usage rows older than the statistics window. Returns how many went. */
export async function pruneUsage(db: Db, oldestKeptDay: string): Promise<number> {
  const result = await sql`delete from analytics.usage_daily where day < ${oldestKeptDay}::date`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** Every day that has usage rows (for the Parquet export). */
export async function usageDays(db: Db): Promise<string[]> {
  const rows = await sql<{
    day: string;
  }>`select distinct day::text as day from analytics.usage_daily order by 1`.execute(db);
  return rows.rows.map((r) => r.day);
}

/** One page of a day's usage rows, in a stable order (for the Parquet export). */
export async function usageOfDay(
  db: Db,
  day: string,
  offset: number,
  limit: number,
): Promise<Record<string, unknown>[]> {
  return (
    await sql<{ processor_ms: Record<string, number>[] }>`
      select day, customer_id, ${USAGE_SUMS}
      from analytics.usage_daily where day = ${day}
      group by day, customer_id order by customer_id limit ${limit} offset ${offset}`.execute(db)
  ).rows.map((r) => ({ ...r, processor_ms: addProcessorMs(r.processor_ms) }));
}
