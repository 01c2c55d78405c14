import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';
import { OptionalKind } from '@sinclair/typebox';

type Document = { paths?: Record<string, Record<string, { requestBody?: { required?: boolean } }>> };

/**
 * @fastify/swagger marks every request body required; a body declared Type.Optional may be left
 * out (the validator lets an absent one through), and the document must say so.
 */
export function optionalBodies(): Pick<FastifyDynamicSwaggerOptions, 'transform' | 'transformObject'> {
  const optional = new Set<string>();
  return {
    transform({ schema, url, route }) {
      const body = (schema as { body?: object } | undefined)?.body;
      if (body && OptionalKind in body) {
        const path = url.replace(/:([^/]+)/g, '{$1}');
        for (const method of [route?.method ?? []].flat()) optional.add(`${method.toLowerCase()} ${path}`);
      }
      return { schema, url };
    },
    transformObject(documentObject) {
      const openapiObject = (documentObject as { openapiObject: unknown }).openapiObject;
      const document = openapiObject as Document;
      for (const [path, operations] of Object.entries(document.paths ?? {})) {
        for (const [method, operation] of Object.entries(operations)) {
          if (operation.requestBody && optional.has(`${method} ${path}`))
            operation.requestBody.required = false;
        }
      }
      return openapiObject as never;
    },
  };
}
