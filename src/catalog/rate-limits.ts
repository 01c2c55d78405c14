import { sql } from 'kysely';
import type { Db } from './database.ts';

export interface BucketTake {
  /** Whether the cost was taken (tokens were enough). */
  granted: boolean;
  /** Tokens left after this request (negative: in debt, refilling). */
  tokens: number;
}

/**
 * Takes `cost` tokens from a customer's bucket `name`, or none when there are fewer than `need`
 * tokens: one statement, so every api process shares the bucket and concurrent requests queue on
 * its row. The bucket refills at `rate` tokens a second up to `burst`, by the catalog's clock (one
 * clock for every process). A new bucket starts full. `cost` may be taken beyond the tokens there
 * are (debt): the byte bucket is charged after the bytes are in, and refuses while in debt.
 * The arithmetic is `ingest/rate-limit.ts` `takeTokens`, which the unit tests pin.
 */
export async function takeTokens(
  db: Db,
  customerId: string,
  name: string,
  bucket: { rate: number; burst: number },
  cost: number,
  need: number,
): Promise<BucketTake> {
  const { rate, burst } = bucket;
  const refilled = sql`least(${burst}::float8, b.tokens + greatest(0, extract(epoch from (now() - b.updated_at))) * ${rate}::float8)`;
  const result = await sql<{ tokens: number; granted: boolean }>`
    insert into rate_buckets as b (customer_id, name, tokens, updated_at, granted)
    values (${customerId}, ${name}, ${burst}::float8 - case when ${burst}::float8 >= ${need}::float8 then ${cost}::float8 else 0 end,
            now(), ${burst}::float8 >= ${need}::float8)
    on conflict (customer_id, name) do update set
      tokens = ${refilled} - case when ${refilled} >= ${need}::float8 then ${cost}::float8 else 0 end,
      granted = ${refilled} >= ${need}::float8,
      updated_at = greatest(b.updated_at, now())
    returning tokens, granted`.execute(db);
  const row = result.rows[0]!;
  return { granted: row.granted, tokens: Number(row.tokens) };
}
