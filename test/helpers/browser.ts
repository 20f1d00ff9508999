/** Debian's Chromium, driven by playwright-core (installed by .ci/setup). */
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env['BEAM_CHROMIUM'] ?? '/usr/bin/chromium';

export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  // --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', ...extraArgs],
  });
}
