import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

const DASHBOARD = new URL('../web/dashboard.html', import.meta.url);

/** The CSP hashes of the dashboard's inline scripts: they run, and nothing injected next to them does. */
export function inlineScriptHashes(html: string): string[] {
  const hashes: string[] = [];
  for (const match of html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/g)) {
    hashes.push(`'sha256-${createHash('sha256').update(match[1]!).digest('base64')}'`);
  }
  return hashes;
}

/**
 * Security headers on every answer (helmet): a Content-Security-Policy the dashboard works under,
 * nosniff, no framing, no referrer. Answers say `Cache-Control: no-store` unless their route sets
 * another: they carry keys, images and customers' statistics, which no cache or proxy may keep.
 */
export async function securityHeaders(app: FastifyInstance): Promise<void> {
  const scripts = inlineScriptHashes(await readFile(DASHBOARD, 'utf8'));
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'", ...scripts],
        scriptSrcAttr: ["'none'"],
        // ECharts writes style attributes into its tooltips' markup.
        styleSrc: ["'self'", "'unsafe-inline'"],
        // The favicon is a data: URL; CSV downloads are blob: URLs.
        imgSrc: ["'self'", 'data:', 'blob:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // TLS is the load balancer's; a Strict-Transport-Security header belongs there, where HTTPS is.
    strictTransportSecurity: false,
  });
  app.addHook('onSend', async (_request, reply) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  });
}
