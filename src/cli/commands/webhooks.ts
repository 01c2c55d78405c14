import type { ApiClient } from '../client.ts';
import { fail } from '../fail.ts';

interface Webhook {
  id: string;
  customerId: string;
  url: string;
  events: string[];
  enabled: boolean;
  disabledReason: string | null;
  secret?: string;
}

interface Delivery {
  id: string;
  eventType: string;
  status: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: string;
}

const USAGE = `usage: imagelake webhooks list [--customer-id ID]
       imagelake webhooks create URL --customer-id ID [--events image.processed,image.failed]
       imagelake webhooks deliveries WEBHOOK_ID [--status pending|delivered|failed]
       imagelake webhooks replay WEBHOOK_ID --from TIME --to TIME
       imagelake webhooks enable WEBHOOK_ID`;

function describe(w: Webhook): string {
  const state = w.enabled ? 'enabled' : `disabled: ${w.disabledReason ?? ''}`;
  return `${w.id}  ${w.customerId}  ${w.url}  [${w.events.join(', ')}]  ${state}`;
}

/** `imagelake webhooks ...`: customers' webhook endpoints and their delivery logs, as admin. */
export async function webhooksCommand(
  sub: string | undefined,
  args: string[],
  values: Record<string, unknown>,
  admin: () => ApiClient,
): Promise<void> {
  const customerId = typeof values['customer-id'] === 'string' ? values['customer-id'] : undefined;
  const [id] = args;
  if (sub === 'list') {
    const query = customerId ? `?customerId=${encodeURIComponent(customerId)}` : '';
    const { webhooks } = await admin().json<{ webhooks: Webhook[] }>('GET', `/v1/webhooks${query}`);
    console.log(webhooks.length ? webhooks.map(describe).join('\n') : 'No webhook endpoints.');
    return;
  }
  if (sub === 'create' && id && customerId) {
    const events = String(values.events ?? 'image.processed,image.failed')
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean);
    const w = await admin().json<Webhook>('POST', '/v1/webhooks', { url: id, events, customerId });
    console.log(`${describe(w)}\n  secret: ${w.secret}   (shown only now)`);
    return;
  }
  if (sub === 'deliveries' && id) {
    const query = typeof values.status === 'string' ? `&status=${encodeURIComponent(values.status)}` : '';
    const { deliveries } = await admin().json<{ deliveries: Delivery[] }>(
      'GET',
      `/v1/webhooks/${id}/deliveries?limit=200${query}`,
    );
    for (const d of deliveries) {
      const last = d.lastStatusCode ?? d.lastError ?? '';
      const next = d.nextAttemptAt ? `next ${d.nextAttemptAt}` : '';
      console.log(
        `${d.id}  ${d.createdAt}  ${d.eventType}  ${d.status}  ${d.attempts} attempts  ${last}  ${next}`.trim(),
      );
    }
    if (deliveries.length === 0) console.log('No deliveries.');
    return;
  }
  if (sub === 'replay' && id && typeof values.from === 'string' && typeof values.to === 'string') {
    const { replayed } = await admin().json<{ replayed: number }>('POST', `/v1/webhooks/${id}/replay`, {
      from: values.from,
      to: values.to,
      status: 'failed',
    });
    console.log(`${replayed} failed deliveries sent again`);
    return;
  }
  if (sub === 'enable' && id) {
    console.log(describe(await admin().json<Webhook>('PATCH', `/v1/webhooks/${id}`, { enabled: true })));
    return;
  }
  fail(USAGE);
}
