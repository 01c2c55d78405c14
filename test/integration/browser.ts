import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';

const ENSURE_CHROMIUM = fileURLToPath(new URL('../../scripts/services/chromium', import.meta.url));

/**
 * Debian's Chromium (installed by scripts/services/chromium if missing), headless, and one page
 * whose uncaught errors and Content-Security-Policy violations are collected so a test can assert
 * the page had none.
 */
export async function openBrowser(viewport: { width: number; height: number }): Promise<{
  browser: Browser;
  page: Page;
  pageErrors: Error[];
}> {
  const executablePath = execFileSync(ENSURE_CHROMIUM, ['ensure'], { encoding: 'utf8' }).trim();
  const browser = await chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-quic',
      '--disable-sync',
    ],
  });
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const pageErrors: Error[] = [];
  page.on('pageerror', (error) => pageErrors.push(error));
  // What the Content-Security-Policy blocks is no page error, only a console message: count it as one.
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text()))
      pageErrors.push(new Error(message.text()));
  });
  page.setDefaultTimeout(20_000);
  return { browser, page, pageErrors };
}
