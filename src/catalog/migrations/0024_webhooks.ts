// Frozen in time: a migration never imports application code.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // A customer's webhook endpoints. The secret signs every delivery (Standard Webhooks); after a
  // rotation the previous one signs too until previous_secret_until. failing_since is the first
  // failed attempt since the last success: five days of it disable the endpoint. last_claim_at
  // turns the dispatcher's claim round robin across endpoints.
  await sql`
    create table webhook_endpoints (
      id uuid primary key,
      customer_id uuid not null references customers (id) on delete cascade,
      url text not null,
      description text,
      events text[] not null,
      secret text not null,
      previous_secret text,
      previous_secret_until timestamptz,
      enabled boolean not null default true,
      disabled_reason text,
      disabled_at timestamptz,
      failing_since timestamptz,
      last_claim_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index webhook_endpoints_customer on webhook_endpoints (customer_id) where enabled`.execute(
    db,
  );

  // One event for one endpoint, written in the transaction of what it tells (the outbox pattern).
  // Its id is the webhook-id header of every attempt, so receivers can dedupe. payload is the body,
  // byte for byte as every attempt sends and signs it; attempt_log the attempts (status code, error, latency). Deliveries hold image
  // metadata, so the purge and erasure delete them with their image (image_id).
  await sql`
    create table webhook_deliveries (
      id uuid primary key,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      customer_id uuid not null,
      image_id uuid,
      event_type text not null,
      payload text not null,
      status text not null default 'pending',
      attempts integer not null default 0,
      round_attempts integer not null default 0,
      next_attempt_at timestamptz,
      lease_token uuid,
      lease_until timestamptz,
      last_status integer,
      last_error text,
      attempt_log jsonb not null default '[]',
      created_at timestamptz not null,
      delivered_at timestamptz
    )`.execute(db);
  await sql`
    create index webhook_deliveries_due on webhook_deliveries (endpoint_id, next_attempt_at)
      where status = 'pending'`.execute(db);
  // Deliveries under a lease (in flight, or held by a dispatcher that died): the claim counts them
  // per endpoint to keep within its limit.
  await sql`
    create index webhook_deliveries_leased on webhook_deliveries (endpoint_id)
      where lease_token is not null`.execute(db);
  await sql`create index webhook_deliveries_endpoint on webhook_deliveries (endpoint_id, created_at, id)`.execute(
    db,
  );
  await sql`create index webhook_deliveries_image on webhook_deliveries (image_id) where image_id is not null`.execute(
    db,
  );
  await sql`create index webhook_deliveries_created on webhook_deliveries (created_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table webhook_deliveries`.execute(db);
  await sql`drop table webhook_endpoints`.execute(db);
}
