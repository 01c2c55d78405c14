import type { Db } from '../../catalog/database.ts';
import { getSetting, putSetting } from '../../catalog/settings.ts';
import type { Processors } from './chain.ts';
import type { ProcessorSpec } from './spec.ts';

/**
 * What the running processors said of themselves (name, version, fields), as the workers found them
 * at boot. Only worker processes start processors; the api role answers GET /v1/processors from this
 * record, kept in the catalog's settings so every process of every role reads the same one.
 */
const KEY = 'processors_declared';

export interface Declaration {
  identity: string;
  name: string;
  version: string;
  fields: Record<string, string>;
  declaredAt: string;
}

/** The entry of the processors file a declaration belongs to, whether or not the file names it. */
export function identityOf(spec: ProcessorSpec): string {
  if (spec.kind === 'module') return `module:${spec.module}`;
  if (spec.kind === 'command') return `command:${JSON.stringify(spec.command)}`;
  return `url:${spec.url}`;
}

/** Called by a worker once its processors started: the latest boot's declarations win. */
export async function recordDeclarations(db: Db, processors: Processors, now: Date): Promise<void> {
  if (processors.list.length === 0) return;
  const described = processors.describe();
  const declarations: Declaration[] = processors.list.map((p, i) => ({
    identity: identityOf(p.spec),
    name: p.name,
    version: p.version,
    fields: described[i]!.fields,
    declaredAt: now.toISOString(),
  }));
  const value = JSON.stringify(declarations);
  await putSetting(db, KEY, value);
}

export async function readDeclarations(db: Db): Promise<Declaration[]> {
  const value = await getSetting(db, KEY);
  if (value === undefined) return [];
  try {
    return JSON.parse(value) as Declaration[];
  } catch {
    return [];
  }
}
