/**
 * The fields a processor declares it returns, and the check of what it actually returned. Declared
 * types keep the catalog and the statistics typed: an analyst grouping by `quality.exposure` must
 * never meet a number where a string was promised. The grammar is docs/processors.md's.
 */
export type FieldType =
  | 'string'
  | 'integer'
  | 'number'
  | 'boolean'
  | 'string[]'
  | 'integer[]'
  | 'number[]'
  | 'boolean[]'
  | 'object';

export interface FieldSpec {
  type: FieldType;
  optional: boolean;
}

export type Fields = Record<string, FieldSpec>;

const TYPES = new Set<string>([
  'string',
  'integer',
  'number',
  'boolean',
  'string[]',
  'integer[]',
  'number[]',
  'boolean[]',
  'object',
]);
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;
const MAX_STRING = 10_000;
const MAX_LIST = 1_000;
export const MAX_LABELS = 100;
const MAX_LABEL = 100;

/** Parses `{"sharpness": "number", "faces": "integer?"}`; throws with every problem at once. */
export function parseFields(declared: unknown, who: string): Fields {
  if (declared === null || typeof declared !== 'object' || Array.isArray(declared)) {
    throw new Error(`${who}: fields must be an object of name: type, e.g. {"sharpness": "number"}`);
  }
  const fields: Fields = {};
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(declared)) {
    if (!FIELD_NAME.test(name))
      problems.push(`field name "${name}" must be an identifier (letters, digits, _ and -)`);
    const text = typeof raw === 'string' ? raw.trim() : '';
    const optional = text.endsWith('?');
    const type = optional ? text.slice(0, -1) : text;
    if (!TYPES.has(type)) {
      problems.push(
        `field "${name}" has type ${JSON.stringify(raw)}; use one of ${[...TYPES].join(', ')} (add ? for optional)`,
      );
      continue;
    }
    fields[name] = { type: type as FieldType, optional };
  }
  if (problems.length) throw new Error(`${who}: ${problems.join('; ')}`);
  return fields;
}

/** The declaration written back as text, for hello frames, the CLI and the docs. */
export function formatFields(fields: Fields): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).map(([n, f]) => [n, `${f.type}${f.optional ? '?' : ''}`]));
}

function checkValue(type: FieldType, value: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string' && value.length <= MAX_STRING;
    case 'integer':
      return Number.isSafeInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    default: {
      const item = type.slice(0, -2) as FieldType;
      return Array.isArray(value) && value.length <= MAX_LIST && value.every((v) => checkValue(item, v));
    }
  }
}

/** Every way `metadata` breaks the declaration, as sentences; empty when it conforms. */
export function checkMetadata(fields: Fields, metadata: unknown): string[] {
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    return [`metadata must be an object, not ${Array.isArray(metadata) ? 'an array' : typeof metadata}`];
  }
  const problems: string[] = [];
  const record = metadata as Record<string, unknown>;
  for (const [name, value] of Object.entries(record)) {
    const spec = fields[name];
    if (!spec) problems.push(`"${name}" is not a declared field`);
    else if (value === null || value === undefined) {
      if (!spec.optional) problems.push(`"${name}" is null but declared ${spec.type}`);
    } else if (!checkValue(spec.type, value)) {
      problems.push(`"${name}" should be ${spec.type}, got ${describe(value)}`);
    }
  }
  for (const [name, spec] of Object.entries(fields)) {
    if (!spec.optional && !(name in record)) problems.push(`"${name}" is missing`);
  }
  return problems;
}

export function checkLabels(labels: unknown): string[] {
  if (labels === undefined || labels === null) return [];
  if (!Array.isArray(labels)) return ['labels must be a list of strings'];
  if (labels.length > MAX_LABELS) return [`at most ${MAX_LABELS} labels, got ${labels.length}`];
  const bad = labels.filter((l) => typeof l !== 'string' || !l || l.length > MAX_LABEL);
  return bad.length ? [`labels must be non-empty strings of at most ${MAX_LABEL} characters`] : [];
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'number')
    return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  if (typeof value === 'string') return value.length > MAX_STRING ? 'a string too long' : 'a string';
  return typeof value;
}

/** The scalar declared fields: the ones analytics can group by. */
export function isDimension(spec: FieldSpec): boolean {
  return (
    spec.type === 'string' || spec.type === 'integer' || spec.type === 'number' || spec.type === 'boolean'
  );
}
