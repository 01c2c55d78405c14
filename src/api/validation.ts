import { AjvCompiler, type Options } from '@fastify/ajv-compiler';
import { OptionalKind } from '@sinclair/typebox';
import type { FastifySchemaValidationError } from 'fastify/types/schema.js';
import { PATTERN_MESSAGES } from './schemas.ts';

type BuildValidator = ReturnType<typeof AjvCompiler>;

/**
 * Query strings, path parameters and headers are text, so their numbers and booleans are coerced;
 * a JSON body already has types, and coercing it would store 42 as the name "42".
 */
export function buildValidator(
  externalSchemas: Parameters<BuildValidator>[0],
  options: Parameters<BuildValidator>[1],
): ReturnType<BuildValidator> {
  const pool = AjvCompiler();
  const coercing = pool(externalSchemas, options);
  const customOptions = (options?.customOptions ?? {}) as Options;
  const strict = pool(externalSchemas, {
    ...options,
    customOptions: { ...customOptions, coerceTypes: false },
  } as Parameters<BuildValidator>[1]);
  return (route) => {
    if (route.httpPart !== 'body') return coercing(route);
    const validate = strict(route);
    if (!(OptionalKind in (route.schema as object))) return validate;
    // An optional body may be left out: Fastify validates an absent body as null.
    const optional = ((data: unknown) => {
      if (data === null) return true;
      const valid = validate(data);
      optional.errors = validate.errors;
      return valid;
    }) as typeof validate;
    return optional;
  };
}

const PART: Record<string, string> = {
  body: 'body field',
  querystring: 'query parameter',
  params: 'path parameter',
  headers: 'header',
};

/** What a format asks for, in words. */
const FORMATS: Record<string, string> = {
  date: 'must be a calendar day that exists, as YYYY-MM-DD',
  'date-time': 'must be a date and time as in 2026-11-21T10:00:00Z',
  uuid: 'must be a UUID',
};

function describe(error: FastifySchemaValidationError): string {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'enum':
      return `must be one of: ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'pattern':
      return PATTERN_MESSAGES.get(params.pattern as string) ?? `must match ${params.pattern}`;
    case 'format':
      return FORMATS[params.format as string] ?? `must be a ${params.format}`;
    case 'type':
      return `must be ${/^[aeiou]/.test(String(params.type)) ? 'an' : 'a'} ${params.type}`;
    case 'additionalProperties':
      return 'is not a field here; remove it';
    default:
      return error.message ?? 'is not valid';
  }
}

/**
 * One sentence per field at fault, naming it and what it must be: "query parameter "status" must
 * be one of: received, processing, processed, failed". Ajv reports a failed union once per branch
 * and then once more for the union; the first branch's reason is the one kept.
 */
export function formatValidationErrors(errors: FastifySchemaValidationError[], part: string): Error {
  const byField = new Map<string, string>();
  for (const error of errors) {
    const params = error.params as Record<string, unknown>;
    // A missing or an extra field is reported on its parent object; name the field itself.
    const named = params.missingProperty ?? params.additionalProperty;
    const path =
      error.keyword === 'required' || error.keyword === 'additionalProperties'
        ? `${error.instancePath}/${named}`
        : error.instancePath;
    const field = path.replace(/^\//, '').replaceAll('/', '.');
    if (byField.has(field) || error.keyword === 'anyOf') continue;
    const where = field
      ? `${PART[part] ?? part} "${field}"`
      : `the ${part === 'querystring' ? 'query string' : part}`;
    byField.set(field, error.keyword === 'required' ? `${where} is required` : `${where} ${describe(error)}`);
  }
  if (byField.size === 0) byField.set('', `the ${part} does not match the documented schema`);
  const message = [...byField.values()].join('; ');
  return new Error(`${message[0]!.toUpperCase()}${message.slice(1)}.`);
}
