/**
 * The Vite plugin (`beam-tunnel/vite`) in a real Vite project: the dev server
 * shares itself as it starts, prints the link beside Vite's own lines, and a
 * page opened through the link in Chromium gets module edits by HMR.
 */
import { rmSync } from 'node:fs';
import { stripVTControlCharacters } from 'node:util';
import type { Browser } from 'playwright-core';
import { createLogger, createServer, type ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import beam from '../../vite.js';
import { launchChromium } from '../helpers/browser.js';
import { request } from '../helpers/http.js';
import { type ServerHandle, startServer } from '../helpers/procs.js';
import { setMessage, writeViteApp } from '../helpers/vite-app.js';

let dir: string;
let vite: ViteDevServer;
let server: ServerHandle;
let browser: Browser;
const printed: string[] = [];
let linkPrinted: (line: string) => void;
const link = new Promise<string>((resolve) => {
  linkPrinted = resolve;
});

beforeAll(async () => {
  dir = writeViteApp('beam-vite-plugin-');
  server = await startServer();
  // Vite's own logger, with what it prints kept: the plugin's line comes through it.
  const logger = createLogger('info');
  const info = logger.info.bind(logger);
  logger.info = (msg, options) => {
    // Vite colours its lines when it thinks a terminal or CI reads them (picocolors and CI=true): the text, without the colour codes.
    printed.push(stripVTControlCharacters(msg));
    const m = /Beam:\s+(\S+)/.exec(msg);
    if (m) linkPrinted(m[1] as string);
    info(msg, options);
  };
  vite = await createServer({
    root: dir,
    configFile: false,
    customLogger: logger,
    clearScreen: false,
    plugins: [beam({ server: server.url, inspect: false })],
    server: { host: '127.0.0.1', port: 0, strictPort: false },
  });
  await vite.listen();
  vite.printUrls();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await vite?.close();
  await server?.proc.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('the Vite plugin', () => {
  it("prints the share's link after Vite's Local line, and the link serves the dev server", async () => {
    const url = await link;
    expect(url).toMatch(new RegExp(`^http://[a-z]+-[a-z]+-\\d{3}\\.localhost:${server.port}/$`));
    const local = printed.findIndex((l) => l.includes('Local:'));
    const beamLine = printed.findIndex((l) => l.includes('Beam:'));
    expect(local).toBeGreaterThanOrEqual(0);
    expect(beamLine).toBeGreaterThan(local);
    const res = await request(server.port, new URL(url).host, '/msg.js');
    expect(res.status).toBe(200);
    expect(res.body.toString()).toContain("export const msg = 'one'");
  });

  it('a page opened through the link gets an edit by HMR, without a reload', async () => {
    const url = await link;
    const page = await browser.newPage();
    const connected = new Promise<void>((resolve) => page.on('console', (m) => m.text().includes('[vite] connected') && resolve()));
    await page.goto(url);
    const frame = page.frameLocator('#beam-app');
    await expect.poll(() => frame.locator('#out').textContent(), { timeout: 20_000 }).toBe('one');
    await connected;
    const app = page.frames().find((f) => f !== page.mainFrame());
    setMessage(dir, 'two');
    await expect.poll(() => frame.locator('#out').textContent(), { timeout: 20_000 }).toBe('two');
    expect(await app?.evaluate(() => (window as unknown as { loads: number }).loads)).toBe(1);
    await page.close();
  });

  it('the share closes with the dev server', async () => {
    const url = await link;
    await vite.close();
    // The agent left: the name is no one's now (closed on purpose, so not held).
    await expect
      .poll(async () => (await request(server.port, new URL(url).host, '/')).headers['beam-error'], { timeout: 10_000 })
      .toBe('BEAM_ERR_SHARE_NOT_FOUND');
  });
});
