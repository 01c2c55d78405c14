import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifySchemaValidationError } from 'fastify/types/schema.js';
import { RouteMethods } from '../../src/api/http-errors.ts';
import { NAME_PATTERN, TEXT_PATTERN } from '../../src/api/schemas.ts';
import { formatValidationErrors } from '../../src/api/validation.ts';

const error = (
  keyword: string,
  instancePath: string,
  params: Record<string, unknown>,
  message = 'is wrong',
): FastifySchemaValidationError => ({ keyword, instancePath, schemaPath: '#', params, message });

describe('validation messages', () => {
  it('names the field and lists the allowed values of a choice', () => {
    const { message } = formatValidationErrors(
      [error('enum', '/status', { allowedValues: ['received', 'processed'] })],
      'querystring',
    );
    assert.equal(message, 'Query parameter "status" must be one of: received, processed.');
  });

  it('says once per field what a union wanted, not once per branch', () => {
    const { message } = formatValidationErrors(
      [
        error('type', '/retention', { type: 'string' }),
        error('type', '/retention', { type: 'null' }),
        error('anyOf', '/retention', {}),
      ],
      'body',
    );
    assert.equal(message, 'Body field "retention" must be a string.');
  });

  it('names a missing field, an unknown one, and several at once', () => {
    const { message } = formatValidationErrors(
      [
        error('required', '', { missingProperty: 'name' }),
        error('additionalProperties', '', { additionalProperty: 'nam' }),
        error('pattern', '/name', { pattern: NAME_PATTERN }),
      ],
      'body',
    );
    assert.equal(message, 'Body field "name" is required; body field "nam" is not a field here; remove it.');
  });

  it('says what a pattern and a format ask for in words', () => {
    assert.equal(
      formatValidationErrors([error('pattern', '/source', { pattern: TEXT_PATTERN })], 'querystring').message,
      'Query parameter "source" must not contain control characters (such as NUL).',
    );
    assert.equal(
      formatValidationErrors([error('format', '/from', { format: 'date' })], 'querystring').message,
      'Query parameter "from" must be a calendar day that exists, as YYYY-MM-DD.',
    );
    assert.equal(
      formatValidationErrors([error('type', '/limit', { type: 'integer' })], 'querystring').message,
      'Query parameter "limit" must be an integer.',
    );
  });
});

describe('name and text patterns', () => {
  const name = new RegExp(NAME_PATTERN, 'u');
  const text = new RegExp(TEXT_PATTERN, 'u');

  it('takes names with a visible character, in any script, with inner spaces', () => {
    for (const ok of ['Acme', 'Ünïcödé GmbH', '株式会社', ' padded ', 'a\u00a0b'])
      assert.ok(name.test(ok), ok);
  });

  it('refuses blank names and control characters', () => {
    for (const bad of ['', '   ', '\u3000', '\ufeff', 'a\u0000b', 'tab\there', 'line\nbreak', '\u0085'])
      assert.ok(!name.test(bad), JSON.stringify(bad));
    assert.ok(!text.test('photo\u0000.jpg'));
    assert.ok(text.test('photo 1.jpg'));
  });
});

describe('route methods', () => {
  const routes = new RouteMethods();
  routes.add('/v1/images', ['GET', 'HEAD']);
  routes.add('/v1/images', 'POST');
  routes.add('/v1/images/:id', ['GET', 'DELETE']);
  routes.add('/v1/images/:id/renditions/:name', 'GET');

  it('lists the methods of a path, its parameters filled in, ignoring the query', () => {
    assert.deepEqual(routes.allowed('/v1/images?limit=1'), ['GET', 'HEAD', 'POST']);
    assert.deepEqual(routes.allowed('/v1/images/8c1e'), ['DELETE', 'GET']);
    assert.deepEqual(routes.allowed('/v1/images/8c1e/renditions/thumb'), ['GET']);
  });

  it('knows no path that no route has', () => {
    assert.equal(routes.allowed('/v1/imagesx'), undefined);
    assert.equal(routes.allowed('/v1/images/8c1e/renditions'), undefined);
    assert.equal(routes.allowed('/v1/images/a/b/c/d'), undefined);
  });
});
