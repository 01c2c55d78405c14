import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, type ErrorCode } from '../errors.ts';

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (a malformed request line, headers
 * over 16 KiB, a request not received in time) get the same `{error: {code, message}}` as the rest.
 */
export function clientErrorHandler(log: FastifyBaseLogger) {
  return (error: NodeJS.ErrnoException, socket: Duplex): void => {
    // The client went away: there is no one to answer, and it is not the server's fault.
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const code: ErrorCode =
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'REQUEST_TIMEOUT'
        : error.code === 'HPE_HEADER_OVERFLOW'
          ? 'HEADERS_TOO_LARGE'
          : 'MALFORMED_REQUEST';
    log.debug({ code, parserError: error.code }, 'request refused by the HTTP parser');
    const { status, message } = ERRORS[code];
    const body = JSON.stringify({ error: { code, message } });
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
          'Content-Type: application/json; charset=utf-8\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\n` +
          'X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n' +
          body,
      );
    }
    socket.destroy();
  };
}

/** A URL Fastify's router cannot read (a bad percent-encoding) is the client's error too. */
export function frameworkErrors(error: Error, _request: FastifyRequest, reply: FastifyReply): void {
  reply.status(400).send({
    error: { code: 'MALFORMED_REQUEST', message: `${ERRORS.MALFORMED_REQUEST.message} ${error.message}` },
  });
}

/**
 * The routes' paths and methods, so that a known path asked with a method it does not take answers
 * 405 with an Allow header instead of "no such route".
 */
export class RouteMethods {
  readonly #routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];

  add(url: string, methods: string | string[]): void {
    const source = `^${url
      .split('/')
      .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/')}/?$`;
    let route = this.#routes.find((r) => r.pattern.source === source);
    if (!route) {
      route = { pattern: new RegExp(source), methods: new Set() };
      this.#routes.push(route);
    }
    for (const method of [methods].flat()) route.methods.add(method.toUpperCase());
  }

  /** The methods the path takes, or undefined when no route has that path. */
  allowed(url: string): string[] | undefined {
    const path = url.split('?')[0]!;
    const methods = this.#routes.filter((r) => r.pattern.test(path)).flatMap((r) => [...r.methods]);
    return methods.length ? [...new Set(methods)].sort() : undefined;
  }
}
