// A real browser for page tests: Debian's chromium (/usr/bin/chromium, installed by .ci/run) driven by playwright-core,
// never a browser Playwright downloads. A browser that cannot start is an error, so a page test fails rather than skips.
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  try {
    return await chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--headless', '--no-sandbox', '--disable-gpu'], timeout: 30_000 });
  } catch (err) {
    throw new Error(`chromium did not start from ${CHROMIUM_PATH} (Debian's chromium package; .ci/run installs it): ${(err as Error).message}`);
  }
}
