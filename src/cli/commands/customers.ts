import { parseBytes } from '../../config/duration.ts';
import type { ApiClient } from '../client.ts';
import { fail } from '../fail.ts';

/** The limits options given, as PATCH /v1/customers/{id} takes them ("default": null). */
function limitOptions(values: Record<string, unknown>): Record<string, number | null> {
  const settings: Record<string, number | null> = {};
  const options: Array<[string, string, (v: string) => number | undefined]> = [
    ['uploads-per-second', 'uploadsPerSecond', (v) => (/^\d+(\.\d+)?$/.test(v) ? Number(v) : undefined)],
    ['bytes-per-second', 'bytesPerSecond', parseBytes],
    ['monthly-images', 'monthlyImages', (v) => (/^\d+$/.test(v) ? Number(v) : undefined)],
    ['monthly-bytes', 'monthlyBytes', parseBytes],
    ['queue-share', 'queueShare', (v) => (/^\d+$/.test(v) ? Number(v) : undefined)],
  ];
  for (const [option, key, parse] of options) {
    const raw = values[option];
    if (typeof raw !== 'string') continue;
    if (raw.trim() === 'default') {
      settings[key] = null;
      continue;
    }
    const value = parse(raw.trim());
    if (value === undefined) fail(`--${option} ${JSON.stringify(raw)} is not a number (or "default")`);
    settings[key] = value;
  }
  return settings;
}

/** `imagelake customers create|list|weight|duplicates|limits`: through the running server's API, as admin. */
export async function customersCommand(
  sub: string | undefined,
  args: string[],
  values: Record<string, unknown>,
  admin: () => ApiClient,
): Promise<void> {
  if (sub === 'create') {
    const name = args.join(' ').trim();
    if (!name) fail('usage: imagelake customers create NAME');
    const c = await admin().json<{ id: string; name: string; apiKey: string }>('POST', '/v1/customers', {
      name,
    });
    console.log(`customer ${c.name}\n  id:      ${c.id}\n  api key: ${c.apiKey}   (shown only now)`);
    return;
  }
  if (sub === 'list') {
    const { customers } = await admin().json<{
      customers: Array<{ id: string; name: string; createdAt: string }>;
    }>('GET', '/v1/customers');
    for (const c of customers) console.log(`${c.id}  ${c.createdAt}  ${c.name}`);
    return;
  }
  if (sub === 'weight') {
    const [id, weight] = args;
    if (!id || !weight || !/^[0-9]+$/.test(weight)) fail('usage: imagelake customers weight ID N');
    const c = await admin().json<{ id: string; weight: number }>('PATCH', `/v1/customers/${id}`, {
      weight: Number(weight),
    });
    console.log(`customer ${c.id}: weight ${c.weight}`);
    return;
  }
  if (sub === 'duplicates') {
    const [id, policy] = args;
    if (!id || (policy !== undefined && !['accept', 'flag', 'reject'].includes(policy)))
      fail('usage: imagelake customers duplicates ID [accept|flag|reject]');
    const c = await admin().json<{ id: string; duplicates: string }>(
      policy ? 'PATCH' : 'GET',
      `/v1/customers/${id}`,
      policy ? { duplicates: policy } : undefined,
    );
    console.log(`customer ${c.id}: duplicates ${c.duplicates}`);
    return;
  }
  if (sub === 'limits') {
    const id = args[0];
    if (!id) fail('usage: imagelake customers limits ID [--uploads-per-second N] [--queue-share N] ...');
    const settings = limitOptions(values);
    type Shown = {
      name: string;
      limits: Record<string, number | null>;
      effectiveLimits: Record<string, number>;
      usage: { month: string; images: number; bytes: number };
    };
    const c = Object.keys(settings).length
      ? await admin().json<Shown>('PATCH', `/v1/customers/${id}`, { limits: settings })
      : await admin().json<Shown>('GET', `/v1/customers/${id}`);
    console.log(`customer ${c.name}`);
    for (const [key, value] of Object.entries(c.effectiveLimits)) {
      const own = c.limits[key];
      console.log(
        `  ${key.padEnd(17)} ${String(value === 0 && key !== 'queueShare' ? 'no limit' : value).padEnd(12)} ${own === null ? '(default)' : '(own)'}`,
      );
    }
    console.log(`  usage ${c.usage.month}: ${c.usage.images} images, ${c.usage.bytes} bytes`);
    return;
  }
  return fail(
    'usage: imagelake customers create NAME | customers list | customers limits ID | customers weight ID N | customers duplicates ID [POLICY]',
  );
}
