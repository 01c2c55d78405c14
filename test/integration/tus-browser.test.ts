import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { jpeg, largeJpeg } from '../fixtures/images.ts';
import { openBrowser } from './browser.ts';
import { createCustomer, freePort, settled, startTestServer, type TestServer } from './harness.ts';

const PAGE_SCRIPT = fileURLToPath(new URL('../fixtures/uppy/page.js', import.meta.url));
const DASHBOARD_CSS = fileURLToPath(
  new URL('../../node_modules/@uppy/dashboard/dist/style.min.css', import.meta.url),
);

/**
 * A browser upload as a customer's web app does it: a page on its own origin with Uppy's Dashboard
 * and the tus plugin, uploading to the API on another origin (CORS, IMAGELAKE_CORS_ORIGINS).
 */
describe('tus from a browser: Uppy Dashboard, cross-origin', () => {
  let t: TestServer;
  let pages: Server;
  let pageOrigin: string;
  let browser: Browser;
  let page: Page;
  let pageErrors: Error[];

  before(async () => {
    const script = await build({ entryPoints: [PAGE_SCRIPT], bundle: true, format: 'esm', write: false });
    const { readFile } = await import('node:fs/promises');
    const css = await readFile(DASHBOARD_CSS);
    const files: Record<string, [string, string | Buffer]> = {
      '/': [
        'text/html',
        '<!doctype html><html><head><link rel="stylesheet" href="/uppy.css"></head>' +
          '<body><div id="uploader"></div><script type="module" src="/page.js"></script></body></html>',
      ],
      '/page.js': ['text/javascript', script.outputFiles[0]!.text],
      '/uppy.css': ['text/css', css],
    };
    pages = createServer((request, response) => {
      const file = files[new URL(request.url!, 'http://x').pathname];
      if (!file) return response.writeHead(404).end();
      response.writeHead(200, { 'content-type': file[0] }).end(file[1]);
    });
    const port = await freePort();
    await new Promise<void>((resolve) => pages.listen(port, '127.0.0.1', resolve));
    // Another origin than the API's: localhost, not 127.0.0.1, and its own port.
    pageOrigin = `http://localhost:${port}`;
    t = await startTestServer({ IMAGELAKE_CORS_ORIGINS: pageOrigin });
    ({ browser, page, pageErrors } = await openBrowser({ width: 1200, height: 900 }));
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => pages?.close(resolve));
    await t?.stop();
  });

  it('uploads two files with the Dashboard and both are processed', async () => {
    const customer = await createCustomer(t.url, 'Browser');
    await page.goto(`${pageOrigin}/?api=${encodeURIComponent(t.url)}&key=${customer.apiKey}`);
    await page.setInputFiles('.uppy-Dashboard-input >> nth=0', [
      { name: 'beach.jpg', mimeType: 'image/jpeg', buffer: await largeJpeg(3_000_000) },
      { name: 'street.jpg', mimeType: 'image/jpeg', buffer: await jpeg({ width: 1200, height: 800 }) },
    ]);
    await page.click('.uppy-StatusBar-actionBtn--upload');
    await page.waitForFunction(() => (window as { uploaded?: unknown }).uploaded, undefined, {
      timeout: 60_000,
    });
    const uploaded = await page.evaluate(
      () =>
        (window as unknown as { uploaded: { successful: number; failed: number; imageIds: string[] } })
          .uploaded,
    );
    assert.deepEqual(
      { successful: uploaded.successful, failed: uploaded.failed },
      { successful: 2, failed: 0 },
    );
    assert.equal(uploaded.imageIds.length, 2, 'the browser reads Imagelake-Image-Id (exposed by CORS)');
    for (const id of uploaded.imageIds) {
      const image = await settled(t.url, customer.apiKey, id);
      assert.equal(image.status, 'processed', JSON.stringify(image.error));
    }
    const names = await Promise.all(
      uploaded.imageIds.map(async (id) => (await settled(t.url, customer.apiKey, id)).filename),
    );
    assert.deepEqual(names.sort(), ['beach.jpg', 'street.jpg']);
    assert.deepEqual(pageErrors, []);
  });

  it('answers a preflight from an origin not listed without allowing it', async () => {
    const response = await fetch(`${t.url}/v1/tus`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, tus-resumable, upload-length',
      },
    });
    assert.ok(response.status < 300);
    assert.notEqual(response.headers.get('access-control-allow-origin'), 'http://evil.example');
    assert.notEqual(response.headers.get('access-control-allow-origin'), '*');
  });
});
