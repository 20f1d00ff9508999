/**
 * Hardening of the gateway's HTTP entry, probed with raw bytes on real
 * sockets: request smuggling gets 400 and never reaches the origin, header
 * size and count are capped, slow clients time out without starving anyone,
 * and an idle share's pooled origin sockets never answer stale.
 */

import http from 'node:http';
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BeamServer, startBeamServer } from '../../gateway/server.js';
import { MAX_CLIENT_HEADER_COUNT, MAX_HEADER_BYTES } from '../../shared/constants.js';
import { loadEngine } from '../../transport/index.js';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, type BeamProcess, type ServerHandle, startAgent } from '../helpers/procs.js';

/** Short, so the slowloris test is quick; the default is GATEWAY_HEADERS_TIMEOUT_MS. */
const HEADERS_TIMEOUT_MS = 2_000;

let origin: Origin;
let server: BeamServer;
let agent: AgentHandle;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startBeamServer(
    { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }) },
    { port: 0, host: '127.0.0.1', headersTimeoutMs: HEADERS_TIMEOUT_MS },
  );
  const handle: ServerHandle = { proc: undefined as unknown as BeamProcess, port: server.port, url: `http://127.0.0.1:${server.port}` };
  agent = await startAgent(origin.port, handle, ['--no-inspect']);
});
afterAll(async () => {
  await agent?.proc.kill();
  await server?.close();
  await origin?.close();
});

/** Writes raw bytes to the gateway and resolves with everything it answered before closing (or after `quietMs` of silence). */
function raw(bytes: string, quietMs = 1_500): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: server.port });
    let answer = '';
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    socket.on('data', (d: Buffer) => {
      answer += d.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    });
    socket.on('close', done);
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? done() : reject(err)));
    socket.write(bytes);
  });
}

const statusOf = (answer: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);

describe('request smuggling probes get 400 and never reach the origin', () => {
  const host = (): string => agent.host;
  const probes: Array<[string, () => string]> = [
    [
      'CL+TE (Content-Length and Transfer-Encoding together)',
      () =>
        `POST /smuggle-1 HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-1 HTTP/1.1\r\nHost: ${host()}\r\n\r\n`,
    ],
    [
      'TE+CL (Transfer-Encoding first)',
      () =>
        `POST /smuggle-2 HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled-2 HTTP/1.1\r\nHost: ${host()}\r\n\r\n\r\n0\r\n\r\n`,
    ],
    [
      'two different Content-Lengths',
      () => `POST /smuggle-3 HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcdGET /smuggled-3 HTTP/1.1\r\n\r\n`,
    ],
    [
      'obfuscated Transfer-Encoding: xchunked',
      () => `POST /smuggle-4 HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\nabcd`,
    ],
    [
      'obfuscated Transfer-Encoding: space before the colon',
      () => `POST /smuggle-5 HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\nabcd`,
    ],
    [
      'obfuscated Transfer-Encoding: chunked, identity',
      () => `POST /smuggle-6 HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
    ],
    [
      'obfuscated Transfer-Encoding: a folded line',
      () => `POST /smuggle-7 HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\nabcd`,
    ],
    ['a bare LF in a header', () => `GET /smuggle-8 HTTP/1.1\r\nHost: ${host()}\r\nX-A: b\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['an invalid chunk size', () => `POST /smuggle-9 HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n`],
  ];
  for (const [what, bytes] of probes) {
    it(what, async () => {
      const answer = await raw(bytes());
      expect(statusOf(answer), answer.slice(0, 200)).toBe(400);
      // The probe and anything smuggled in its body never reached the origin.
      const n = /smuggle-(\d)/.exec(bytes())?.[1];
      expect(origin.hits.get(`/smuggle-${n}`)).toBeUndefined();
      expect(origin.hits.get(`/smuggled-${n}`)).toBeUndefined();
    });
  }

  it('while a well-formed request on the same gateway goes through', async () => {
    const answer = await raw(`GET /well-formed HTTP/1.1\r\nHost: ${agent.host}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(answer)).toBe(200);
    expect(answer).toContain('hello from /well-formed');
  });
});

describe('a request Node refuses while the gateway is still setting up its session', () => {
  it('is answered 400 and never reaches the origin: the gateway checks the client is still there before it sends the head', async () => {
    // No warm links: each share's first request waits for its session, and Node's parser refuses the body meanwhile.
    const cold = await startBeamServer(
      { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }) },
      { port: 0, host: '127.0.0.1', warmLinks: 0 },
    );
    const handle: ServerHandle = { proc: undefined as unknown as BeamProcess, port: cold.port, url: `http://127.0.0.1:${cold.port}` };
    const coldAgent = await startAgent(origin.port, handle, ['--no-inspect']);
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect({ host: '127.0.0.1', port: cold.port });
        let text = '';
        socket.on('data', (d: Buffer) => {
          text += d.toString('latin1');
        });
        socket.on('close', () => resolve(text));
        socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(text) : reject(err)));
        socket.write(`POST /smuggle-cold HTTP/1.1\r\nHost: ${coldAgent.host}\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n`);
      });
      expect(statusOf(answer)).toBe(400);
      // The session comes up after the 400: a later request proves the agent and origin were reachable all along.
      const after = await request(cold.port, coldAgent.host, '/after-cold');
      expect(after.status).toBe(200);
      expect(origin.hits.get('/smuggle-cold')).toBeUndefined();
    } finally {
      await coldAgent.proc.kill();
      await cold.close();
    }
  });
});

describe('header limits', () => {
  it(`more than MAX_CLIENT_HEADER_COUNT (${MAX_CLIENT_HEADER_COUNT}) header lines: 431 BEAM_ERR_HEAD_TOO_LARGE, origin untouched; exactly that many pass`, async () => {
    const head = (n: number): string =>
      `GET /many-headers HTTP/1.1\r\nHost: ${agent.host}\r\n${Array.from({ length: n - 2 }, (_, i) => `X-H${i}: 1\r\n`).join('')}Connection: close\r\n\r\n`;
    const over = await raw(head(MAX_CLIENT_HEADER_COUNT + 1));
    expect(statusOf(over)).toBe(431);
    expect(over).toMatch(/beam-error: BEAM_ERR_HEAD_TOO_LARGE/i);
    expect(origin.hits.get('/many-headers')).toBeUndefined();
    expect(statusOf(await raw(head(MAX_CLIENT_HEADER_COUNT)))).toBe(200);
    expect(origin.hits.get('/many-headers')).toBe(1);
  });

  it(`more than MAX_HEADER_BYTES (${MAX_HEADER_BYTES}) of headers: 431, origin untouched`, async () => {
    const answer = await raw(`GET /big-headers HTTP/1.1\r\nHost: ${agent.host}\r\nX-Big: ${'a'.repeat(MAX_HEADER_BYTES)}\r\n\r\n`);
    expect(statusOf(answer)).toBe(431);
    expect(origin.hits.get('/big-headers')).toBeUndefined();
  });
});

describe('slow clients (slowloris)', () => {
  it('200 clients dripping their headers are cut after the headers timeout, and nobody else waits meanwhile', async () => {
    const started = performance.now();
    const slow = Array.from({ length: 200 }, () => {
      const socket = net.connect({ host: '127.0.0.1', port: server.port });
      socket.write(`GET /slow HTTP/1.1\r\nHost: ${agent.host}\r\n`);
      const drip = setInterval(() => socket.write('X-Drip: 1\r\n'), 250);
      return new Promise<{ closedAfterMs: number; answer: string }>((resolve) => {
        let answer = '';
        socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
        socket.on('error', () => {});
        socket.on('close', () => {
          clearInterval(drip);
          resolve({ closedAfterMs: performance.now() - started, answer });
        });
      });
    });
    // Meanwhile, ordinary requests are answered at once.
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const res = await request(server.port, agent.host, `/not-starved-${i}`, { agent: false });
      expect(res.body.toString()).toBe(`hello from /not-starved-${i}`);
      latencies.push(performance.now() - t0);
    }
    console.log(`requests during slowloris: max ${Math.max(...latencies).toFixed(0)} ms`);
    expect(Math.max(...latencies)).toBeLessThan(HEADERS_TIMEOUT_MS);
    const results = await Promise.all(slow);
    for (const r of results) {
      expect(r.closedAfterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
      expect(r.answer === '' || statusOf(r.answer) === 408, r.answer).toBe(true);
    }
    expect(origin.hits.get('/slow')).toBeUndefined();
  });
});

describe('an idle share', () => {
  it('never answers from a stale pooled origin socket: after the origin closes its idle keep-alive sockets, 20 requests get real answers', async () => {
    // An origin that drops idle keep-alive sockets after 300 ms, as many servers do after a while.
    const seen: string[] = [];
    const quick = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.end(`real answer ${req.url}`);
    });
    quick.keepAliveTimeout = 300;
    const closed: Array<Promise<void>> = [];
    quick.on('connection', (s: net.Socket) => closed.push(new Promise((resolve) => s.once('close', () => resolve()))));
    await new Promise<void>((resolve) => quick.listen(0, '127.0.0.1', resolve));
    const idle = await startAgent(
      `127.0.0.1:${(quick.address() as net.AddressInfo).port}`,
      { proc: undefined as unknown as BeamProcess, port: server.port, url: `http://127.0.0.1:${server.port}` },
      ['--no-inspect'],
    );
    try {
      expect((await request(server.port, idle.host, '/warm')).status).toBe(200);
      // Every socket the agent pooled is closed by the origin now.
      await Promise.all(closed);
      const answers: string[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await request(server.port, idle.host, `/after-idle-${i}`);
        expect(res.status).toBe(200);
        answers.push(res.body.toString());
      }
      expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => `real answer /after-idle-${i}`));
      expect(seen.filter((u) => u.startsWith('/after-idle-'))).toHaveLength(20);
    } finally {
      await idle.proc.kill();
      quick.close();
    }
  });

  it('a request that meets a pooled socket the origin just closed goes again on a new connection (bodiless only); a POST gets 502 and reaches nobody twice', async () => {
    // An origin that answers one request per connection, then resets the
    // connection when a second request arrives on it: the race of a keep-alive
    // socket closing while a request is on its way, made certain. A POST it
    // resets on any connection, whichever one the agent's pool picks for it.
    const requests: string[] = [];
    let connections = 0;
    const racy = net.createServer((socket) => {
      // Counted once a request arrives: the agent's start-up check connects without one.
      socket.once('data', () => connections++);
      let buffered = '';
      let answered = 0;
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('latin1');
        let end: number;
        while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
          const head = buffered.slice(0, end);
          const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
          if (buffered.length < end + 4 + length) return;
          buffered = buffered.slice(end + 4 + length);
          const line = head.split('\r\n')[0] ?? '';
          if (answered++ > 0 || line.startsWith('POST')) {
            requests.push(`reset ${line}`);
            socket.resetAndDestroy();
            return;
          }
          requests.push(line);
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${line.length}\r\nConnection: keep-alive\r\n\r\n${line}`);
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => racy.listen(0, '127.0.0.1', resolve));
    const port = (racy.address() as net.AddressInfo).port;
    const share = await startAgent(
      `127.0.0.1:${port}`,
      { proc: undefined as unknown as BeamProcess, port: server.port, url: `http://127.0.0.1:${server.port}` },
      ['--no-inspect'],
    );
    try {
      const first = await request(server.port, share.host, '/one');
      expect(first.status).toBe(200);
      // Pooled: this one meets the reset, and is sent again on a new connection.
      const second = await request(server.port, share.host, '/two');
      expect(second.status).toBe(200);
      expect(second.body.toString()).toBe('GET /two HTTP/1.1');
      expect(requests).toEqual(['GET /one HTTP/1.1', 'reset GET /two HTTP/1.1', 'GET /two HTTP/1.1']);
      expect(connections).toBe(2);
      // A request with a body is never sent twice: the visitor hears it failed.
      const post = await request(server.port, share.host, '/three', { method: 'POST', body: Buffer.from('once') });
      expect(post.status).toBe(502);
      expect(post.headers['beam-error']).toBe('BEAM_ERR_ORIGIN_UNREACHABLE');
      expect(requests.filter((r) => r.includes('/three'))).toEqual(['reset POST /three HTTP/1.1']);
    } finally {
      await share.proc.kill();
      racy.close();
    }
  });
});
