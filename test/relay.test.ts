/**
 * The relay in-process, with real WebSockets on loopback: splicing, and each
 * of its limits (made small here through RelayLimits, defaults in
 * shared/constants.ts).
 */

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type RelayLimits, RelayServer } from '../gateway/relay.js';
import { MAX_RELAY_CAP_SECONDS, RELAY_MAX_MESSAGE_BYTES, RELAY_PATH } from '../shared/constants.js';
import type { BeamError } from '../shared/errors.js';
import { connectRelay, relayServerFor, serveRelayInProcess, wsPipe } from '../transport/relay.js';
import type { Pipe } from '../transport/secure.js';

let server: http.Server | undefined;
let relay: RelayServer | undefined;

afterEach(async () => {
  relay?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = relay = undefined;
});

/** A relay where every session id is valid once per side with token "t-<session>". */
async function start(
  limits: Partial<RelayLimits> = {},
  uncapped?: (session: string) => boolean,
): Promise<(session: string, role: 'visitor' | 'agent') => Promise<WebSocket>> {
  const used = new Set<string>();
  relay = new RelayServer(
    {
      logger: pino({ level: 'silent' }),
      redeem: (session, role, token) => {
        // A session that signaling just ended because the agent refused the visitor.
        if (session === 'ended-full') return 'BEAM_ERR_MAX_VISITORS';
        const key = `${session}/${role}`;
        if (token !== `t-${session}` || used.has(key)) return false;
        used.add(key);
        return true;
      },
      ...(uncapped ? { uncapped } : {}),
    },
    limits,
  );
  const r = relay;
  server = http.createServer();
  server.on('upgrade', (req, socket, head: Buffer) => r.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return (session, role) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}${RELAY_PATH}?session=${session}&role=${role}&token=t-${session}`);
      // Listen from the start: the partner's first message can come in the same read as the upgrade response.
      inboxes.set(ws, []);
      ws.on('message', (d: Buffer) => {
        inboxes.get(ws)!.push(d);
        for (const w of waiters.get(ws) ?? []) w();
      });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) =>
        reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, code: res.headers['beam-error'] })),
      );
      ws.once('error', reject);
    });
}

const inboxes = new Map<WebSocket, Buffer[]>();
const waiters = new Map<WebSocket, Array<() => void>>();

/** Resolves with everything `ws` received once that is at least `bytes`. */
function received(ws: WebSocket, bytes: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const check = (): void => {
      const all = Buffer.concat(inboxes.get(ws) ?? []);
      if (all.length >= bytes) resolve(all);
    };
    waiters.set(ws, [...(waiters.get(ws) ?? []), check]);
    check();
  });
}

const closed = (ws: WebSocket): Promise<number> => new Promise((resolve) => ws.once('close', (code) => resolve(code)));
const closedWhy = (ws: WebSocket): Promise<{ code: number; reason: string }> =>
  new Promise((resolve) => ws.once('close', (code, reason: Buffer) => resolve({ code, reason: reason.toString() })));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('the relay', () => {
  it('splices both directions byte-exact, including what the first side sent before the second arrived', async () => {
    const open = await start();
    const visitor = await open('s1', 'visitor');
    const early = randomBytes(1000);
    visitor.send(early);
    const agent = await open('s1', 'agent');
    const toAgent = randomBytes(4 * 1024 * 1024);
    const toVisitor = randomBytes(4 * 1024 * 1024);
    const atAgent = received(agent, early.length + toAgent.length);
    const atVisitor = received(visitor, toVisitor.length);
    for (let i = 0; i < toAgent.length; i += 64 * 1024) visitor.send(toAgent.subarray(i, i + 64 * 1024));
    for (let i = 0; i < toVisitor.length; i += 64 * 1024) agent.send(toVisitor.subarray(i, i + 64 * 1024));
    expect(sha(await atAgent)).toBe(sha(Buffer.concat([early, toAgent])));
    expect(sha(await atVisitor)).toBe(sha(toVisitor));
    expect(relay!.bytesRelayed).toBe(early.length + toAgent.length + toVisitor.length);
    // One side leaving ends the other.
    const agentClosed = closed(agent);
    visitor.close();
    expect(await agentClosed).toBe(1000);
  });

  it('closes a side whose partner never arrives after pairTimeoutMs, with 4504', async () => {
    const open = await start({ pairTimeoutMs: 200 });
    const visitor = await open('lonely', 'visitor');
    const started = performance.now();
    expect(await closed(visitor)).toBe(4504);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
    expect(relay!.sessionCount).toBe(0);
  });

  it('closes a first side that sends more than highWaterBytes before its partner arrives, with 1009', async () => {
    const open = await start({ highWaterBytes: 64 * 1024 });
    const visitor = await open('chatty', 'visitor');
    const done = closed(visitor);
    visitor.send(randomBytes(48 * 1024));
    visitor.send(randomBytes(48 * 1024));
    expect(await done).toBe(1009);
  });

  it('refuses a session beyond maxSessions with 429 BEAM_ERR_LIMIT_REACHED', async () => {
    const open = await start({ maxSessions: 2 });
    await open('a', 'visitor');
    await open('b', 'visitor');
    await expect(open('c', 'visitor')).rejects.toMatchObject({ status: 429, code: 'BEAM_ERR_LIMIT_REACHED' });
    // The second side of an existing session still gets in.
    await expect(open('a', 'agent')).resolves.toBeInstanceOf(WebSocket);
  });

  it(`closes a sender of a message over RELAY_MAX_MESSAGE_BYTES (${RELAY_MAX_MESSAGE_BYTES}) with 1009, and of a text message with 1003`, async () => {
    const open = await start();
    const big = await open('big', 'visitor');
    await open('big', 'agent');
    const bigClosed = closed(big);
    big.send(Buffer.alloc(RELAY_MAX_MESSAGE_BYTES + 1));
    expect(await bigClosed).toBe(1009);
    const text = await open('text', 'visitor');
    await open('text', 'agent');
    const textClosed = closed(text);
    text.send('plain text is not ciphertext');
    expect(await textClosed).toBe(1003);
  });

  it('tells a side that arrives just after its session ended why it ended (not a bare refusal)', async () => {
    const open = await start();
    await expect(open('ended-full', 'visitor')).rejects.toMatchObject({ status: 503, code: 'BEAM_ERR_MAX_VISITORS' });
  });

  it('ends a session at its byte cap (maxBytes, both directions): 4509 BEAM_ERR_RELAY_CAPPED to both sides, nothing past the cap forwarded', async () => {
    const cap = 256 * 1024;
    const open = await start({ maxBytes: cap });
    const visitor = await open('big-transfer', 'visitor');
    const agent = await open('big-transfer', 'agent');
    // What transport/relay.ts makes of the agent's socket: it reports the code the relay gave.
    const pipe = wsPipe(agent);
    const pipeClosed = new Promise<void>((resolve) => pipe.onClose(resolve));
    const atVisitor = closedWhy(visitor);
    const atAgent = closedWhy(agent);
    // 128 KiB each way fits; the next 160 KiB from the visitor passes the cap.
    const first = received(agent, 64 * 1024);
    visitor.send(randomBytes(64 * 1024));
    await first;
    agent.send(randomBytes(64 * 1024));
    await received(visitor, 64 * 1024);
    for (let i = 0; i < 10; i++) visitor.send(randomBytes(16 * 1024));
    expect(await atVisitor).toEqual({ code: 4509, reason: 'BEAM_ERR_RELAY_CAPPED' });
    expect(await atAgent).toEqual({ code: 4509, reason: 'BEAM_ERR_RELAY_CAPPED' });
    await pipeClosed;
    expect(pipe.closeCode?.()).toBe('BEAM_ERR_RELAY_CAPPED');
    const carried = Buffer.concat(inboxes.get(agent) ?? []).length + Buffer.concat(inboxes.get(visitor) ?? []).length;
    expect(carried).toBeLessThanOrEqual(cap);
    expect(carried).toBeGreaterThanOrEqual(cap - 16 * 1024);
    expect(relay!.bytesRelayed).toBe(carried);
    expect(relay!.sessionCount).toBe(0);
  });

  it('ends a session at its time cap (maxMs, counted from the splice), idle or not', async () => {
    const open = await start({ maxMs: 300 });
    const visitor = await open('long', 'visitor');
    const atVisitor = closedWhy(visitor);
    // Waiting for the partner does not count.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const agent = await open('long', 'agent');
    const spliced = performance.now();
    const atAgent = closedWhy(agent);
    visitor.send(randomBytes(1024));
    expect((await received(agent, 1024)).length).toBe(1024);
    expect(await atAgent).toEqual({ code: 4509, reason: 'BEAM_ERR_RELAY_CAPPED' });
    expect(await atVisitor).toEqual({ code: 4509, reason: 'BEAM_ERR_RELAY_CAPPED' });
    expect(performance.now() - spliced).toBeGreaterThanOrEqual(250);
  });

  it("leaves sessions the server exempts uncapped (its own gateway's), byte-exact past the cap", async () => {
    const open = await start({ maxBytes: 64 * 1024, maxMs: 60_000 }, (session) => session === 'gateway-session');
    const visitor = await open('gateway-session', 'visitor');
    const agent = await open('gateway-session', 'agent');
    const body = randomBytes(1024 * 1024);
    const atAgent = received(agent, body.length);
    for (let i = 0; i < body.length; i += 64 * 1024) visitor.send(body.subarray(i, i + 64 * 1024));
    expect(sha(await atAgent)).toBe(sha(body));
    expect(relay!.sessionCount).toBe(1);
  });

  it('refuses caps that are not whole numbers, or a time cap past what a timer holds', () => {
    const components = { logger: pino({ level: 'silent' }), redeem: () => false };
    expect(() => new RelayServer(components, { maxBytes: -1 })).toThrow(RangeError);
    expect(() => new RelayServer(components, { maxMs: 1.5 })).toThrow(RangeError);
    expect(() => new RelayServer(components, { maxMs: MAX_RELAY_CAP_SECONDS * 1000 + 1 })).toThrow(RangeError);
    expect(() => new RelayServer(components, { maxBytes: 0, maxMs: MAX_RELAY_CAP_SECONDS * 1000 })).not.toThrow();
  });

  it('refuses a second connection for the same side of a session', async () => {
    const open = await start();
    await open('once', 'visitor');
    await expect(open('once', 'visitor')).rejects.toMatchObject({ status: 403, code: 'BEAM_ERR_RELAY_REFUSED' });
  });
});

describe('relayServerFor (the node a relayed session meets at)', () => {
  it("takes a node on the server's host or below it, over http(s); anything else falls back to the server", () => {
    const server = 'https://beam.example.com';
    expect(relayServerFor(server, undefined)).toBe(server);
    expect(relayServerFor(server, 'https://node1.beam.example.com/')).toBe('https://node1.beam.example.com');
    expect(relayServerFor(server, 'http://beam.example.com:7071')).toBe('http://beam.example.com:7071');
    expect(relayServerFor(server, 'https://evil.example.net')).toBe(server);
    expect(relayServerFor(server, 'https://beam.example.com.evil.net')).toBe(server);
    expect(relayServerFor(server, 'https://notbeam.example.com')).toBe(server);
    expect(relayServerFor(server, 'file:///etc/passwd')).toBe(server);
    expect(relayServerFor(server, 'not a url')).toBe(server);
    expect(relayServerFor('http://127.0.0.1:7070', 'http://127.0.0.1:7071')).toBe('http://127.0.0.1:7071');
    expect(relayServerFor('http://127.0.0.1:7070', 'http://10.0.0.5:7071')).toBe('http://127.0.0.1:7070');
  });
});

describe("a side in the relay's own process (the server's gateway)", () => {
  /** Everything `pipe` received, once it is at least `bytes`. */
  const pipeInbox = (pipe: Pipe): ((bytes: number) => Promise<Buffer>) => {
    const got: Buffer[] = [];
    let wake: (() => void) | undefined;
    pipe.onMessage((m) => {
      got.push(Buffer.from(m));
      wake?.();
    });
    return (bytes) =>
      new Promise((resolve) => {
        const check = (): void => {
          const all = Buffer.concat(got);
          if (all.length >= bytes) resolve(all);
        };
        wake = check;
        check();
      });
  };

  it('is spliced to a WebSocket side byte-exact both ways, under backpressure, and either side leaving ends the other', async () => {
    const open = await start({ highWaterBytes: 256 * 1024 });
    const pipe = relay!.attachInProcess({ sessionId: 'p1', role: 'visitor', token: 't-p1' });
    const inbox = pipeInbox(pipe);
    const early = randomBytes(1000);
    pipe.send(early);
    const agent = await open('p1', 'agent');
    const toAgent = randomBytes(8 * 1024 * 1024);
    const toVisitor = randomBytes(4 * 1024 * 1024);
    const atAgent = received(agent, early.length + toAgent.length);
    const atVisitor = inbox(toVisitor.length);
    // The pipe says wait (false) while the agent's side is backed up, and drains after.
    let waits = 0;
    let drained: () => void = () => {};
    pipe.onDrain(() => drained());
    for (let i = 0; i < toAgent.length; i += 64 * 1024) {
      if (!pipe.send(toAgent.subarray(i, i + 64 * 1024))) {
        waits++;
        await new Promise<void>((resolve) => {
          drained = resolve;
        });
      }
    }
    for (let i = 0; i < toVisitor.length; i += 64 * 1024) agent.send(toVisitor.subarray(i, i + 64 * 1024));
    expect(sha(await atAgent)).toBe(sha(Buffer.concat([early, toAgent])));
    expect(sha(await atVisitor)).toBe(sha(toVisitor));
    expect(waits).toBeGreaterThan(0);
    expect(relay!.bytesRelayed).toBe(early.length + toAgent.length + toVisitor.length);
    const agentClosed = closed(agent);
    pipe.close();
    expect(await agentClosed).toBe(1000);
    // And the other way: the WebSocket side leaving closes the pipe.
    const second = relay!.attachInProcess({ sessionId: 'p2', role: 'visitor', token: 't-p2' });
    const pipeClosed = new Promise<void>((resolve) => second.onClose(resolve));
    (await open('p2', 'agent')).close();
    await pipeClosed;
  });

  it('is refused as a WebSocket would be: a wrong or used token, a session that ended, past maxSessions', async () => {
    const open = await start({ maxSessions: 1 });
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (err) {
        return (err as BeamError).code;
      }
      return undefined;
    };
    expect(code(() => relay!.attachInProcess({ sessionId: 'q1', role: 'visitor', token: 'nope' }))).toBe('BEAM_ERR_RELAY_REFUSED');
    expect(code(() => relay!.attachInProcess({ sessionId: 'ended-full', role: 'visitor', token: 't-ended-full' }))).toBe('BEAM_ERR_MAX_VISITORS');
    relay!.attachInProcess({ sessionId: 'q1', role: 'visitor', token: 't-q1' });
    expect(code(() => relay!.attachInProcess({ sessionId: 'q1', role: 'visitor', token: 't-q1' }))).toBe('BEAM_ERR_RELAY_REFUSED');
    expect(code(() => relay!.attachInProcess({ sessionId: 'q2', role: 'visitor', token: 't-q2' }))).toBe('BEAM_ERR_LIMIT_REACHED');
    await open('q1', 'agent');
  });

  it("hears why the relay ended its session: a capped session's pipe says BEAM_ERR_RELAY_CAPPED", async () => {
    const open = await start({ maxBytes: 64 * 1024 });
    const pipe = relay!.attachInProcess({ sessionId: 'c1', role: 'visitor', token: 't-c1' });
    const agent = await open('c1', 'agent');
    const pipeClosed = new Promise<void>((resolve) => pipe.onClose(resolve));
    agent.send(randomBytes(128 * 1024));
    await pipeClosed;
    expect(pipe.closeCode?.()).toBe('BEAM_ERR_RELAY_CAPPED');
  });

  it('connectRelay reaches a relay offered in this process without a WebSocket, and not once it is taken back', async () => {
    await start();
    const stop = serveRelayInProcess('http://127.0.0.1:1', (ticket) => relay!.attachInProcess(ticket));
    const pipe = await connectRelay('http://127.0.0.1:1', { sessionId: 'r1', role: 'visitor', token: 't-r1' });
    expect(relay!.sessionCount).toBe(1);
    pipe.close();
    stop();
    // Port 1 has no relay listening: only the WebSocket way is left, and it fails.
    const err = await connectRelay('http://127.0.0.1:1', { sessionId: 'r2', role: 'visitor', token: 't-r2' }).catch((e: BeamError) => e);
    expect((err as BeamError).code).toBe('BEAM_ERR_SERVER_UNREACHABLE');
  });
});
