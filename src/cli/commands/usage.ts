import type { ApiClient } from '../client.ts';
import { printRows } from '../table.ts';

type Row = Record<string, unknown>;

/**
 * `imagelake usage`: usage for billing per customer per day (GET /v1/usage), as a table, --json or
 * --csv. The processor time per processor is flattened into columns (`processorMs.quality`).
 */
export async function usageCommand(
  values: { from?: string; to?: string; customer?: string; json?: boolean; csv?: boolean },
  admin: () => ApiClient,
): Promise<void> {
  const query = new URLSearchParams();
  if (values.from) query.set('from', values.from);
  if (values.to) query.set('to', values.to);
  if (values.customer) query.set('customerId', values.customer);
  const { rows } = await admin().json<{ rows: Row[] }>('GET', `/v1/usage?${query}`);
  const flat = values.json
    ? rows
    : rows.map(({ processorMs, ...rest }) => ({
        ...rest,
        ...Object.fromEntries(
          Object.entries((processorMs ?? {}) as Record<string, number>).map(([name, ms]) => [
            `processorMs.${name}`,
            ms,
          ]),
        ),
      }));
  printRows(flat, ['day', 'customerId'], values, 'No usage in that range.');
}

/** `imagelake queue`: waiting and in-flight jobs by priority, and the customers with the most waiting. */
export async function queueCommand(values: { json?: boolean }, admin: () => ApiClient): Promise<void> {
  const view = await admin().json<{ priorities: Row[]; customers: Row[] }>('GET', '/v1/queue?top=20');
  if (values.json) {
    console.log(JSON.stringify(view, null, 2));
    return;
  }
  printRows(view.priorities, ['priority'], {}, '');
  console.log('');
  printRows(view.customers, ['customerId'], {}, 'No customer has images waiting.');
}
