// The dashboard, driven in a real headless Chromium (Debian's `chromium` + playwright-core).
// If the browser is missing, the first test file's setup installs it (scripts/ensure-chromium.sh:
// root + apt-get); only where no browser can be had do the tests skip, loudly.
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { tempDir } from './servers.js';

const CHROMIUM = process.env.CUTOVER_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ENSURE = fileURLToPath(new URL('../../scripts/ensure-chromium.sh', import.meta.url));

export function loudSkip(reason: string): string {
  const msg = `DASHBOARD BROWSER TEST SKIPPED: ${reason}`;
  const bar = '!'.repeat(Math.min(100, msg.length + 8));
  process.stderr.write(`\n${bar}\n!!! ${msg} !!!\n${bar}\n\n`);
  return msg;
}

export async function browserOrSkipReason(t: Test): Promise<{ launch: (t: Test) => Promise<BrowserContext> } | string> {
  if (!existsSync(CHROMIUM)) {
    t.setTimeout(15 * 60_000); // an apt-get install can take a few minutes
    const r = spawnSync('bash', [ENSURE], { encoding: 'utf8', timeout: 14 * 60_000 });
    t.comment(`ensure-chromium: ${(r.stdout + r.stderr).trim()}`);
    t.setTimeout(5 * 60_000);
    if (!existsSync(CHROMIUM)) return `no browser at ${CHROMIUM} and scripts/ensure-chromium.sh could not install one (needs root and apt-get)`;
  }
  let chromium: typeof import('playwright-core').chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    return `playwright-core is not installed (npm ci): ${(err as Error).message}`;
  }
  const launch = async (t: Test) => {
    const profile = await tempDir(t, 'cutover-chromium-');
    const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1400, height: 1000 } });
    t.teardown(() => ctx.close());
    return ctx;
  };
  // One real launch up front: a browser that is there but cannot start is "no browser" too.
  try {
    const ctx = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    await ctx.close();
  } catch (err) {
    return `${CHROMIUM} does not start: ${(err as Error).message.split('\n')[0]}`;
  }
  return { launch };
}

/** Records page errors and console errors (a CSP violation shows up as one); `expected`: answers the test provokes. */
export function watchErrors(page: Page, expected?: RegExp): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/401 \(Unauthorized\)/.test(m.text()) && !expected?.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return errors;
}

