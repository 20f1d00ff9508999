/**
 * The inspector at 127.0.0.1:4040, driven in real Chromium: requests from
 * every path appear live, the detail view shows bodies, replay reaches the
 * origin once more, the HAR export parses, and the API refuses other sites.
 */

import { mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_INSPECT_PORT } from '../../shared/constants.js';
import { StreamProtocol } from '../../shared/frames.js';
import { decodeResponseHead, encodeHead, readHead } from '../../shared/http-head.js';
import { launchChromium } from '../helpers/browser.js';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, BeamProcess, ROOT, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';
import { type DirectVisitor, directVisitor } from '../helpers/visitor.js';

let origin: Origin;
let server: ServerHandle;
let agent: AgentHandle;
let inspect: string;
let browser: Browser;
let page: Page;
let visitor: DirectVisitor | undefined;
let relayVisitor: DirectVisitor | undefined;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  agent = await startAgent(origin.port, server, ['--inspect', '0']);
  inspect = (await agent.proc.waitFor('ready'))['inspect'] as string;
  browser = await launchChromium();
  page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
});
afterAll(async () => {
  visitor?.close();
  relayVisitor?.close();
  await browser?.close();
  await agent?.proc.kill();
  await server?.proc.kill();
  await origin?.close();
});

const rows = (text: string) => page.locator('#requests tbody tr', { hasText: text });

/** Raw HTTP to the inspector, with the headers a hostile page or a rebinding DNS name would send. */
function call(
  method: string,
  pathname: string,
  headers: Record<string, string>,
  body?: string,
  base = inspect,
): Promise<{ status: number; code: string | undefined }> {
  const url = new URL(pathname, base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let code: string | undefined;
        try {
          code = (JSON.parse(text) as { error?: { code: string } }).error?.code;
        } catch {
          code = undefined;
        }
        resolve({ status: res.statusCode ?? 0, code });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the inspector, in Chromium', () => {
  it('is announced in the ready event and shows requests from the gateway and from a peer-to-peer visitor as they happen', async () => {
    expect(inspect).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await page.goto(inspect);
    await page.locator('#live.on').waitFor();
    await page.locator('#empty').waitFor();

    // Live: the page is already open when the request is made.
    const r = await request(server.port, agent.host, '/echo?via=gateway', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ name: 'widget', sizes: [1, 2, 3] })),
    });
    expect(r.status).toBe(200);
    const row = rows('/echo?via=gateway');
    await row.waitFor();
    await page.waitForFunction(() => document.querySelector('#requests tbody tr')?.getAttribute('data-state') === 'done');
    expect(await row.locator('td[data-col=status]').textContent()).toBe('200');
    expect(await row.locator('.via').textContent()).toBe('gateway');
    expect(await row.locator('td').nth(1).textContent()).toBe('POST');

    // One peer-to-peer visitor held to the direct path, one to the relay.
    for (const relay of ['never', 'always'] as const) {
      const v = await directVisitor(server.url, agent.name, { relay });
      relay === 'never' ? (visitor = v) : (relayVisitor = v);
      const stream = v.session.openStream(StreamProtocol.HTTP);
      stream.end(encodeHead({ method: 'GET', target: `/p2p-hello?n=${relay === 'never' ? 1 : 2}`, headers: [['Host', 'x']], upgrade: false, body: false }));
      const head = decodeResponseHead(await readHead(stream));
      expect(head.kind === 'response' && head.status).toBe(200);
      stream.resume();
    }
    const direct = rows('/p2p-hello?n=1');
    await direct.waitFor();
    expect(await direct.locator('.via').textContent()).toBe('direct');
    const relayed = rows('/p2p-hello?n=2');
    await relayed.waitFor();
    expect(await relayed.locator('.via').textContent()).toBe('relay');
  });

  it('shows headers and bodies: JSON pretty-printed, binary as a hex dump', async () => {
    await rows('/echo?via=gateway').click();
    await page.waitForFunction(() => document.querySelector('#detail-title')?.textContent === 'POST /echo?via=gateway');
    expect(await page.locator('#req-body').textContent()).toBe(JSON.stringify({ name: 'widget', sizes: [1, 2, 3] }, null, 2));
    expect(await page.locator('#res-body').getAttribute('data-kind')).toBe('json');
    expect(await page.locator('#req-headers').textContent()).toContain('application/json');
    expect(await page.locator('#res-status').textContent()).toContain('200');

    const bytes = Buffer.from([0, 1, 2, 3, 0xfe, 0xff, 0x41, 0x42]);
    await request(server.port, agent.host, '/echo?via=binary', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    await rows('/echo?via=binary').click();
    await page.waitForFunction(() => document.querySelector('#req-body')?.getAttribute('data-kind') === 'binary');
    expect(await page.locator('#req-body').textContent()).toBe(`00000000  ${'00 01 02 03 fe ff 41 42'.padEnd(47)}  ......AB`);
  });

  it('replays a request as is: the origin gets it exactly once more', async () => {
    const before = origin.hits.get('/echo') ?? 0;
    const count = await page.locator('#requests tbody tr').count();
    await rows('/echo?via=gateway').click();
    await page.waitForFunction(() => document.querySelector('#detail-title')?.textContent === 'POST /echo?via=gateway');
    await page.locator('#replay').click();
    await page.locator('#replay-status', { hasText: 'Replayed.' }).waitFor();
    expect(origin.hits.get('/echo')).toBe(before + 1);
    expect(await page.locator('#requests tbody tr').count()).toBe(count + 1);
    const replayed = page.locator('#requests tbody tr').first();
    expect(await replayed.locator('.via').textContent()).toBe('replay');
    await page.waitForFunction(() => document.querySelector('#res-body')?.textContent?.includes('"widget"'));
  });

  it('replays an edited request: the origin gets the new body', async () => {
    const before = origin.hits.get('/echo') ?? 0;
    await rows('/echo?via=gateway').first().click();
    await page.waitForFunction(() => document.querySelector('#detail-title')?.textContent === 'POST /echo?via=gateway');
    await page.locator('#edit').click();
    await page.locator('#edit-target').fill('/echo?via=edited');
    await page.locator('#edit-body').fill('{"name":"edited"}');
    await page.locator('#send').click();
    await page.locator('#replay-status', { hasText: 'Replayed.' }).waitFor();
    expect(origin.hits.get('/echo')).toBe(before + 1);
    await page.waitForFunction(() => document.querySelector('#detail-title')?.textContent === 'POST /echo?via=edited');
    await page.waitForFunction(() => document.querySelector('#res-body')?.textContent === '{\n  "name": "edited"\n}');
  });

  it('filters the list, exports a HAR that parses, saves a screenshot, and clears', async () => {
    // Words must all match: the path and the path taken.
    await page.locator('#filter').fill('p2p relay');
    await page.waitForFunction(() => [...document.querySelectorAll('#requests tbody tr')].filter((tr) => !(tr as HTMLElement).hidden).length === 1);
    expect(await page.locator('#requests tbody tr:not([hidden])').textContent()).toContain('/p2p-hello?n=2');
    await page.locator('#filter').fill('');

    const total = await page.locator('#requests tbody tr').count();
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#har').click()]);
    const har = JSON.parse(readFileSync((await download.path()) as string, 'utf8')) as {
      log: {
        version: string;
        entries: Array<{ request: { method: string; url: string; postData?: { text: string } }; response: { status: number }; _beamPath: string }>;
      };
    };
    expect(har.log.version).toBe('1.2');
    expect(har.log.entries).toHaveLength(total);
    const echo = har.log.entries.find((e) => e.request.url.endsWith('/echo?via=gateway'));
    expect(echo?.request.method).toBe('POST');
    expect(JSON.parse(echo?.request.postData?.text ?? 'null')).toEqual({ name: 'widget', sizes: [1, 2, 3] });
    expect(echo?.response.status).toBe(200);
    expect(echo?._beamPath).toBe('gateway');

    mkdirSync(path.join(ROOT, 'test/artifacts'), { recursive: true });
    const shot = await page.screenshot({ path: path.join(ROOT, 'test/artifacts/inspector.png'), fullPage: true });
    expect(shot.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');

    await page.locator('#clear').click();
    await page.locator('#empty').waitFor();
    expect(await page.locator('#requests tbody tr').count()).toBe(0);
  });
});

describe('the inspector API', () => {
  it('answers the favicon a browser asks for with 204, and keeps every column in view at 1,100 px', async () => {
    const favicon = await call('GET', '/favicon.ico', { host: new URL(inspect).host });
    expect(favicon.status).toBe(204);
    expect((await request(server.port, agent.host, '/a/rather/long/path/to/show/in/a/narrow/window?with=a&query=string')).status).toBe(200);
    const narrow = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    try {
      await narrow.goto(inspect);
      await narrow.locator('#requests tbody tr').first().waitFor();
      const list = await narrow.locator('section.list').boundingBox();
      const via = await narrow.locator('#requests th').last().boundingBox();
      const cell = await narrow.locator('#requests tbody tr .via').first().boundingBox();
      expect(await narrow.locator('#requests th').last().textContent()).toBe('Via');
      for (const box of [via, cell]) {
        expect(box).not.toBeNull();
        expect((box?.x ?? 0) + (box?.width ?? 0)).toBeLessThanOrEqual((list?.x ?? 0) + (list?.width ?? 0) + 0.5);
      }
    } finally {
      await narrow.close();
    }
  });

  it('answers only under a loopback Host name (no DNS rebinding)', async () => {
    expect((await call('GET', '/api/requests', { host: 'attacker.example:4040' })).code).toBe('BEAM_ERR_INSPECT_HOST');
    expect((await call('GET', '/api/requests', { host: new URL(inspect).host })).status).toBe(200);
  });

  it('takes changes only from its own page, as JSON', async () => {
    const host = new URL(inspect).host;
    await request(server.port, agent.host, '/echo?via=csrf', { method: 'POST', body: Buffer.from('x') });
    const before = origin.hits.get('/echo') ?? 0;
    const list = await new Promise<{ requests: Array<{ id: string; target: string }> }>((resolve) =>
      http.get(`${inspect}/api/requests`, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(JSON.parse(text) as { requests: Array<{ id: string; target: string }> }));
      }),
    );
    const id = list.requests.find((r) => r.target === '/echo?via=csrf')?.id as string;
    // A form post from another site carries its Origin: refused for where it comes from.
    const crossSite = await call(
      'POST',
      `/api/requests/${id}/replay`,
      { host, origin: 'http://attacker.example', 'content-type': 'application/x-www-form-urlencoded' },
      'a=1',
    );
    expect(crossSite).toEqual({ status: 403, code: 'BEAM_ERR_INSPECT_HOST' });
    // Without JSON, from anywhere: refused, saying what a change must be.
    const form = await call('POST', `/api/requests/${id}/replay`, { host, 'content-type': 'application/x-www-form-urlencoded' }, 'a=1');
    expect(form).toEqual({ status: 400, code: 'BEAM_ERR_BAD_REQUEST' });
    const foreign = await call('POST', `/api/requests/${id}/replay`, { host, origin: 'http://attacker.example', 'content-type': 'application/json' }, '{}');
    expect(foreign).toEqual({ status: 403, code: 'BEAM_ERR_INSPECT_HOST' });
    const clear = await call('DELETE', '/api/requests', { host, origin: 'http://attacker.example' });
    expect(clear.code).toBe('BEAM_ERR_INSPECT_HOST');
    expect(origin.hits.get('/echo')).toBe(before);
    // The same replay from the page's own origin goes through.
    const ok = await call('POST', `/api/requests/${id}/replay`, { host, origin: inspect, 'content-type': 'application/json' }, '{}');
    expect(ok.status).toBe(201);
    expect(origin.hits.get('/echo')).toBe(before + 1);
    const bad = await call('POST', `/api/requests/${id}/replay`, { host, 'content-type': 'application/json' }, '{"method":"get it"}');
    expect(bad).toEqual({ status: 400, code: 'BEAM_ERR_BAD_REQUEST' });
    const gone = await call('POST', '/api/requests/999999/replay', { host, 'content-type': 'application/json' }, '{}');
    expect(gone).toEqual({ status: 404, code: 'BEAM_ERR_EXCHANGE_GONE' });
  });

  it('listens on 127.0.0.1 only', async () => {
    const port = Number(new URL(inspect).port);
    // 127.0.0.2 is loopback too: only a wildcard bind would answer there.
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const s = net.connect({ host: '127.0.0.2', port });
      s.once('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.once('error', resolve);
    });
    expect(err?.code).toBe('ECONNREFUSED');
  });
});

describe('the inspector port', () => {
  it(`takes the next free port when ${DEFAULT_INSPECT_PORT} is taken; --no-inspect has none; a taken --inspect port is a clear error`, async () => {
    // Hold DEFAULT_INSPECT_PORT (unless something already does).
    const blocker = net.createServer();
    await new Promise<void>((resolve) => {
      blocker.once('error', () => resolve());
      blocker.listen(DEFAULT_INSPECT_PORT, '127.0.0.1', () => resolve());
    });
    const auto = await startAgent(origin.port, server);
    const off = await startAgent(origin.port, server, ['--no-inspect']);
    try {
      const url = new URL((await auto.proc.waitFor('ready'))['inspect'] as string);
      expect(url.hostname).toBe('127.0.0.1');
      expect(Number(url.port)).toBeGreaterThan(DEFAULT_INSPECT_PORT);
      expect((await call('GET', '/api/info', { host: url.host }, undefined, url.href)).status).toBe(200);
      expect((await off.proc.waitFor('ready'))['inspect']).toBeUndefined();

      const taken = new BeamProcess(['http', String(origin.port), '--server', server.url, '--json', '--inspect', String(DEFAULT_INSPECT_PORT)]);
      const error = await taken.waitFor('error');
      expect(error['code']).toBe('BEAM_ERR_BAD_OPTION');
      expect(error['message']).toContain(`--inspect ${DEFAULT_INSPECT_PORT}`);
      expect(await taken.exited).toBe(1);
    } finally {
      await auto.proc.kill();
      await off.proc.kill();
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});
