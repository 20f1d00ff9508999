/**
 * Request smuggling to the origin: a body on a request whose method has none
 * by default (GET, HEAD, DELETE, OPTIONS), framed by chunked encoding or by a
 * Content-Length that Connection names, once reached the origin unframed and
 * was read there as a second request on a pooled socket. Each visitor
 * request must produce exactly one origin request, on every path, and the
 * next visitor on the same pool must get its own response.
 *
 * The origin is Node's own HTTP server, keep-alive, counting what it parsed.
 */
import http from 'node:http';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BeamServer, startBeamServer } from '../../gateway/server.js';
import { StreamProtocol } from '../../shared/frames.js';
import { decodeResponseHead, encodeHead, type RequestHead, readHead } from '../../shared/http-head.js';
import { loadEngine } from '../../transport/index.js';
import { launchChromium } from '../helpers/browser.js';
import { close, listen, rawExchange } from '../helpers/http.js';
import { type AgentHandle, type BeamProcess, type ServerHandle, startAgent } from '../helpers/procs.js';
import { type DirectVisitor, directVisitor } from '../helpers/visitor.js';

interface Seen {
  method: string;
  url: string;
  body: string;
}

let seen: Seen[] = [];
let originServer: http.Server;
let originPort: number;
let server: BeamServer;
let agent: AgentHandle;

beforeAll(async () => {
  originServer = http.createServer({ keepAlive: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', body: Buffer.concat(chunks).toString('latin1') });
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain' };
      // What an attacker would plant in a victim's browser if its request's response went to the victim.
      if (req.url?.startsWith('/smuggled')) headers['set-cookie'] = 'stolen=1; Path=/';
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : `origin saw ${req.method} ${req.url}`);
    });
  });
  originServer.keepAliveTimeout = 30_000;
  originPort = await listen(originServer);
  server = await startBeamServer({ engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }) }, { port: 0, host: '127.0.0.1' });
  const handle: ServerHandle = { proc: undefined as unknown as BeamProcess, port: server.port, url: `http://127.0.0.1:${server.port}` };
  agent = await startAgent(`127.0.0.1:${originPort}`, handle, ['--no-inspect']);
});
afterAll(async () => {
  await agent?.proc.kill();
  await server?.close();
  originServer?.closeAllConnections();
  if (originServer) await close(originServer);
});
beforeEach(() => {
  seen = [];
});

/** Writes raw bytes to the gateway; resolves with all it answered once it closes the connection. */
const raw = (bytes: string): Promise<string> => rawExchange(server.port, bytes);

const statusOf = (answer: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);

/** A GET the origin would answer as a request of its own, if it ever read these bytes as one. */
const SMUGGLED = (host: string): string => `GET /smuggled HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

const METHODS = ['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT'] as const;

/** Each framing a visitor can put a body in, as raw request bytes. */
const FRAMINGS: Record<string, (method: string, path: string, host: string, body: string) => string> = {
  chunked: (method, path, host, body) =>
    `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
  'Content-Length named by Connection': (method, path, host, body) =>
    `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${body.length}\r\nConnection: close, content-length\r\n\r\n${body}`,
  'Content-Length': (method, path, host, body) =>
    `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
  'Transfer-Encoding named by Connection': (method, path, host, body) =>
    `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nConnection: close, transfer-encoding\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
};

describe('through the gateway: one visitor request is one origin request, whatever the method and framing', () => {
  let i = 0;
  for (const method of METHODS) {
    for (const [framing, build] of Object.entries(FRAMINGS)) {
      it(`${method} with a body, ${framing}`, async () => {
        const path = `/probe-${++i}`;
        const body = SMUGGLED(agent.host);
        const answer = await raw(build(method, path, agent.host, body));
        expect(statusOf(answer), answer.slice(0, 300)).toBe(200);
        expect(answer).not.toMatch(/stolen=1/);
        // The origin parsed one request, the probe, with its body as a body.
        expect(seen, JSON.stringify(seen)).toHaveLength(1);
        expect(seen[0]).toEqual({ method, url: path, body });

        // A second client on the same pool of origin sockets gets its own answer, not the smuggled one.
        const victim = await raw(`GET /victim HTTP/1.1\r\nHost: ${agent.host}\r\nConnection: close\r\n\r\n`);
        expect(statusOf(victim)).toBe(200);
        expect(victim).toContain('origin saw GET /victim');
        expect(victim).not.toMatch(/stolen=1|\/smuggled/);
        expect(seen.map((s) => s.url)).toEqual([path, '/victim']);
      });
    }
  }

  it('ten keep-alive requests with bodies on one client connection: ten origin requests, ten answers in order', async () => {
    const body = SMUGGLED(agent.host);
    const requests = Array.from(
      { length: 10 },
      (_, n) => `GET /pipelined-${n} HTTP/1.1\r\nHost: ${agent.host}\r\nContent-Length: ${body.length}\r\nConnection: content-length\r\n\r\n${body}`,
    ).join('');
    const answer = await raw(`${requests}GET /last HTTP/1.1\r\nHost: ${agent.host}\r\nConnection: close\r\n\r\n`);
    const bodies = [...answer.matchAll(/origin saw (\S+ \S+)/g)].map((m) => m[1]);
    expect(bodies).toEqual([...Array.from({ length: 10 }, (_, n) => `GET /pipelined-${n}`), 'GET /last']);
    expect(seen.filter((s) => s.url === '/smuggled')).toEqual([]);
    expect(seen).toHaveLength(11);
  });
});

describe.each([
  ['on the direct path', 'never'],
  ["on the server's relay", 'always'],
] as const)('%s: the agent frames the origin hop itself', (_path, relay) => {
  let visitor: DirectVisitor;
  beforeAll(async () => {
    visitor = await directVisitor(`http://127.0.0.1:${server.port}`, agent.name, { relay });
    expect(visitor.session.path).toBe(relay === 'never' ? 'direct' : 'relay');
  });
  afterAll(() => visitor?.close());

  /** Sends a head (and raw body bytes) on a new stream; resolves with the response head and body. */
  async function exchange(head: RequestHead, body?: string): Promise<{ head: ReturnType<typeof decodeResponseHead>; body: string }> {
    const stream = await visitor.session.stream(StreamProtocol.HTTP);
    if (body === undefined) stream.end(encodeHead(head));
    else {
      stream.write(encodeHead(head));
      stream.end(body);
    }
    const response = decodeResponseHead(await readHead(stream));
    const chunks: Buffer[] = [];
    try {
      // An iterator also ends at once on a stream whose end came with the head.
      for await (const c of stream) chunks.push(c as Buffer);
    } catch {
      // a reset after the head: what came before is the answer
    }
    return { head: response, body: Buffer.concat(chunks).toString('latin1') };
  }

  for (const method of METHODS) {
    it(`${method} with a body of unknown length: one origin request, the body chunked`, async () => {
      const body = SMUGGLED('x');
      const res = await exchange({ method, target: `/direct-${method}`, headers: [['Host', 'x']], upgrade: false, body: true }, body);
      expect(res.head.kind).toBe('response');
      expect(seen).toEqual([{ method, url: `/direct-${method}`, body }]);
    });
  }

  it('a Content-Length on a head that says no body follows: 400 BEAM_ERR_BAD_FRAMING, the origin sees nothing', async () => {
    const res = await exchange({
      method: 'GET',
      target: '/no-body-but-length',
      headers: [
        ['Host', 'x'],
        ['Content-Length', '42'],
      ],
      upgrade: false,
      body: false,
    });
    expect(res.head).toMatchObject({ kind: 'response', status: 400, headers: expect.arrayContaining([['beam-error', 'BEAM_ERR_BAD_FRAMING']]) });
    expect(seen).toEqual([]);
  });

  it.each([
    [
      'two Content-Lengths that disagree',
      [
        ['Content-Length', '5'],
        ['Content-Length', '6'],
      ],
    ],
    ['a Content-Length list that disagrees', [['Content-Length', '5, 6']]],
    ['a Content-Length that is not a number', [['Content-Length', '+5']]],
  ])('%s: 400 BEAM_ERR_BAD_FRAMING, the origin sees nothing', async (_what, lengths) => {
    const res = await exchange(
      { method: 'POST', target: '/ambiguous', headers: [['Host', 'x'], ...(lengths as Array<[string, string]>)], upgrade: false, body: true },
      'hello',
    );
    expect(res.head).toMatchObject({ kind: 'response', status: 400, headers: expect.arrayContaining([['beam-error', 'BEAM_ERR_BAD_FRAMING']]) });
    expect(seen).toEqual([]);
  });

  it('a body longer than its Content-Length: the extra bytes never reach the origin', async () => {
    const body = `hello${SMUGGLED('x')}`;
    const res = await exchange(
      {
        method: 'POST',
        target: '/too-long',
        headers: [
          ['Host', 'x'],
          ['Content-Length', '5'],
        ],
        upgrade: false,
        body: true,
      },
      body,
    );
    expect(res.head).toMatchObject({ kind: 'error', code: 'BEAM_ERR_BAD_FRAMING' });
    // The probe may have reached the origin's parser before the agent cut it off; the smuggled request never does.
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(seen.filter((s) => s.url === '/smuggled')).toEqual([]);
    const victim = await exchange({ method: 'GET', target: '/victim-direct', headers: [['Host', 'x']], upgrade: false, body: false });
    expect(victim.body).toBe('origin saw GET /victim-direct');
  });

  it('a body exactly its Content-Length passes as it is', async () => {
    const res = await exchange(
      {
        method: 'DELETE',
        target: '/exact',
        headers: [
          ['Host', 'x'],
          ['Content-Length', '5, 5'],
        ],
        upgrade: false,
        body: true,
      },
      'hello',
    );
    expect(res.head).toMatchObject({ kind: 'response', status: 200 });
    expect(seen).toEqual([{ method: 'DELETE', url: '/exact', body: 'hello' }]);
  });

  it('fuzzed heads (method, framing headers, body flag, body bytes): never more than one origin request, never the smuggled one, and a Content-Length honoured to the byte', async () => {
    const framingHeaders = fc.array(
      fc.oneof(
        fc.tuple(
          fc.constantFrom('Content-Length', 'content-length'),
          fc.oneof(fc.nat({ max: 120 }).map(String), fc.constantFrom('0', '5, 5', '5, 6', '+1', 'x')),
        ),
        fc.tuple(
          fc.constantFrom('Transfer-Encoding', 'TE', 'Connection', 'Trailer'),
          fc.constantFrom('chunked', 'content-length', 'close, content-length', 'gzip, chunked', 'host'),
        ),
        fc.tuple(fc.constant('Host'), fc.constantFrom('x', 'y')),
      ),
      { maxLength: 4 },
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH'),
        framingHeaders,
        fc.boolean(),
        fc.string({ maxLength: 40 }),
        async (method, extra, hasBody, prefix) => {
          seen = [];
          const target = `/fuzz-${++n}`;
          const body = `${prefix}${SMUGGLED('x')}`;
          const res = await exchange({ method, target, headers: [['Host', 'x'], ...extra], upgrade: false, body: hasBody }, hasBody ? body : undefined);
          // The origin parsed at most this request, and nothing smuggled in its body. (An earlier run's request may
          // land now: refused for a body past its Content-Length, its announced bytes had gone out whole, and the
          // origin answers it while the visitor already has the refusal. It is that request's one, never a second.)
          const mine = seen.filter((r) => r.url === target);
          expect(mine.length).toBeLessThanOrEqual(1);
          expect(mine.every((r) => r.method === method)).toBe(true);
          expect(seen.every((r) => r.url.startsWith('/fuzz-'))).toBe(true);
          if (res.head.kind === 'response' && res.head.status === 200) {
            expect(mine).toHaveLength(1);
            const length = extra.find(([k]) => k.toLowerCase() === 'content-length')?.[1];
            // The origin got the whole body, exactly: chunked when no length was given, else exactly that length.
            expect(mine[0]?.body).toBe(hasBody ? body : '');
            if (hasBody && length !== undefined) expect(Number(length.split(',')[0])).toBe(Buffer.byteLength(body, 'latin1'));
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('two Host headers: 400, the origin sees nothing', async () => {
    const res = await exchange({
      method: 'GET',
      target: '/two-hosts',
      headers: [
        ['Host', 'a'],
        ['Host', 'b'],
      ],
      upgrade: false,
      body: false,
    });
    expect(res.head).toMatchObject({ kind: 'response', status: 400, headers: expect.arrayContaining([['beam-error', 'BEAM_ERR_BAD_REQUEST']]) });
    expect(seen).toEqual([]);
  });
});

describe("from the page's Service Worker, in Chromium", () => {
  it('a DELETE and an OPTIONS with a body (a request line in it) are one origin request each, the body intact', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`http://${agent.host}/page`);
      const frame = page.frameLocator('#beam-app');
      await expect.poll(() => frame.locator('body').textContent(), { timeout: 20_000 }).toContain('origin saw GET /page');
      seen = [];
      const body = SMUGGLED(agent.host);
      // The app's own fetch, which the page's worker carries to the agent peer to peer.
      const app = page.frames().find((f) => f !== page.mainFrame());
      if (!app) throw new Error('no app frame');
      const statuses = await app.evaluate(async (b) => {
        const out: number[] = [];
        for (const method of ['DELETE', 'OPTIONS']) out.push((await fetch(`/sw-${method}`, { method, body: b })).status);
        return out;
      }, body);
      expect(statuses).toEqual([200, 200]);
      expect(seen).toEqual([
        { method: 'DELETE', url: '/sw-DELETE', body },
        { method: 'OPTIONS', url: '/sw-OPTIONS', body },
      ]);
    } finally {
      await browser.close();
    }
  });
});
