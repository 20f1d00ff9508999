/**
 * A real Vite dev server shared through Beam and opened in Chromium: editing
 * a module updates the page without a reload (hot module reload over Vite's
 * WebSocket, carried peer to peer), and the gateway proxies nothing.
 */
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { createServer, type ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.js';
import { gatewayRequests } from '../helpers/http.js';
import { type ServerHandle, startAgent, startServer } from '../helpers/procs.js';
import { setMessage, writeViteApp } from '../helpers/vite-app.js';

let dir: string;
let vite: ViteDevServer;
let server: ServerHandle;
let browser: Browser;

beforeAll(async () => {
  dir = writeViteApp('beam-vite-');
  vite = await createServer({
    root: dir,
    configFile: false,
    logLevel: 'silent',
    clearScreen: false,
    server: { host: '127.0.0.1', port: 0, strictPort: false },
  });
  await vite.listen();
  server = await startServer();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.proc.kill();
  await vite?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Vite through Beam in a browser', () => {
  it('editing a module updates the page without a reload, over the peer-to-peer session', async () => {
    const port = (vite.httpServer!.address() as AddressInfo).port;
    const agent = await startAgent(port, server, ['--no-inspect']);
    try {
      const before = await gatewayRequests(server.port);
      const page = await browser.newPage();
      // Vite's client says so on the console once its HMR socket is open (here, through the tunnel).
      const connected = new Promise<void>((resolve) => page.on('console', (m) => m.text().includes('[vite] connected') && resolve()));
      await page.goto(agent.url);
      const frame = page.frameLocator('#beam-app');
      await expect.poll(() => frame.locator('#out').textContent(), { timeout: 20_000 }).toBe('one');
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), { timeout: 15_000 }).toBe('direct');
      await connected;
      const app = page.frames().find((f) => f !== page.mainFrame());
      expect(app).toBeDefined();
      setMessage(dir, 'two');
      await expect.poll(() => frame.locator('#out').textContent(), { timeout: 20_000 }).toBe('two');
      // Hot: the page was not loaded again.
      expect(await app?.evaluate(() => (window as unknown as { loads: number }).loads)).toBe(1);
      expect(await gatewayRequests(server.port)).toBe(before);
      await page.close();
    } finally {
      await agent.proc.kill();
    }
  });
});
