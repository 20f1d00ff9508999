/** Every named limit that the other files don't already hit, hit here. */

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisitorLimit } from '../peer-agent/access.js';
import { OriginIo, originRequest } from '../peer-agent/origin-io.js';
import {
  MAX_HEAD_BYTES,
  MAX_HEADER_BYTES,
  MAX_HEADER_COUNT,
  MAX_SESSIONS_PER_SHARE,
  MAX_SESSIONS_PER_SHARE_PER_ADDRESS,
  MAX_SHARES_PER_CONNECTION,
  ORIGIN_IDLE_SOCKETS,
  SIGNALING_PATH,
  SIGNALING_PROTOCOL_VERSION,
  VISITOR_IDLE_MS,
} from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { decodeRequestHead, encodeHead, readHead } from '../shared/http-head.js';
import { ephemeralIdentity } from '../transport/identity.js';
import { request } from './helpers/http.js';
import { type Stack, startStack } from './helpers/origin.js';

describe('HTTP head limits (codec)', () => {
  it('readHead refuses a length prefix over MAX_HEAD_BYTES before reading the rest', async () => {
    const stream = new PassThrough();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_HEAD_BYTES + 1);
    stream.write(prefix);
    await expect(readHead(stream)).rejects.toMatchObject({ code: 'BEAM_ERR_HEAD_TOO_LARGE' });
  });

  it('encodeHead refuses a head over MAX_HEAD_BYTES', () => {
    const head = { method: 'GET', target: `/${'a'.repeat(MAX_HEAD_BYTES)}`, headers: [], upgrade: false, body: false };
    expect(() => encodeHead(head)).toThrow(BeamError);
    expect(() => encodeHead(head)).toThrow(expect.objectContaining({ code: 'BEAM_ERR_HEAD_TOO_LARGE' }));
  });

  it('a request head with more than MAX_HEADER_COUNT headers is refused with BEAM_ERR_BAD_MESSAGE', () => {
    const headers = Array.from({ length: MAX_HEADER_COUNT + 1 }, (_, i): [string, string] => [`x-h${i}`, 'v']);
    const bytes = encodeHead({ method: 'GET', target: '/', headers, upgrade: false, body: false }).subarray(4);
    expect(() => decodeRequestHead(bytes)).toThrow(expect.objectContaining({ code: 'BEAM_ERR_BAD_MESSAGE' }));
    const ok = encodeHead({ method: 'GET', target: '/', headers: headers.slice(1), upgrade: false, body: false }).subarray(4);
    expect(decodeRequestHead(ok).headers).toHaveLength(MAX_HEADER_COUNT);
  });
});

const PEER_ID = (await ephemeralIdentity()).peerId.toString();

describe('server limits (real processes)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  /** `localAddress`: a loopback address of its own, to be another client address. */
  function connect(role: 'agent' | 'visitor', localAddress?: string): Promise<Socket> {
    const socket = connectSocket(stack.server.url, {
      path: SIGNALING_PATH,
      transports: ['websocket'],
      auth: { protocol: SIGNALING_PROTOCOL_VERSION, role, ...(role === 'agent' ? { peerId: PEER_ID } : {}) },
      reconnection: false,
      ...(localAddress ? { localAddress } : {}),
    } as Parameters<typeof connectSocket>[1]);
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  }
  const ack = (socket: Socket, event: string, payload: unknown): Promise<{ ok: boolean; error?: { code: string } }> =>
    new Promise((resolve) => socket.emit(event, payload, resolve));

  it(`a client sending more than MAX_HEADER_BYTES (${MAX_HEADER_BYTES}) of headers gets 431`, async () => {
    const res = await request(stack.server.port, stack.agent.host, '/', { headers: { 'x-big': 'a'.repeat(MAX_HEADER_BYTES + 1) }, agent: false });
    expect(res.status).toBe(431);
    const fine = await request(stack.server.port, stack.agent.host, '/fine', { headers: { 'x-big': 'a'.repeat(MAX_HEADER_BYTES / 2) } });
    expect(fine.status).toBe(200);
  });

  it(`one connection registers at most MAX_SHARES_PER_CONNECTION (${MAX_SHARES_PER_CONNECTION}) shares`, async () => {
    const socket = await connect('agent');
    try {
      for (let i = 0; i < MAX_SHARES_PER_CONNECTION; i++) expect((await ack(socket, 'share:register', {})).ok).toBe(true);
      expect((await ack(socket, 'share:register', {})).error?.code).toBe('BEAM_ERR_LIMIT_REACHED');
    } finally {
      socket.close();
    }
  });

  it(`a share has at most MAX_SESSIONS_PER_SHARE (${MAX_SESSIONS_PER_SHARE}) sessions open, MAX_SESSIONS_PER_SHARE_PER_ADDRESS (${MAX_SESSIONS_PER_SHARE_PER_ADDRESS}) from one address`, async () => {
    const agent = await connect('agent');
    // Enough addresses to fill the share, each to its own cap.
    const visitors = await Promise.all(
      Array.from({ length: MAX_SESSIONS_PER_SHARE / MAX_SESSIONS_PER_SHARE_PER_ADDRESS + 1 }, (_, i) => connect('visitor', `127.0.2.${i + 1}`)),
    );
    try {
      const reg = await ack(agent, 'share:register', {});
      const name = (reg as unknown as { value: { name: string } }).value.name;
      const [last, ...filling] = [visitors.at(-1) as Socket, ...visitors.slice(0, -1)];
      for (const visitor of filling) {
        for (let i = 0; i < MAX_SESSIONS_PER_SHARE_PER_ADDRESS; i++) expect((await ack(visitor, 'session:open', { share: name })).ok).toBe(true);
        expect((await ack(visitor, 'session:open', { share: name })).error?.code).toBe('BEAM_ERR_LIMIT_REACHED');
      }
      // The share is full: a new address is refused too.
      expect((await ack(last, 'session:open', { share: name })).error?.code).toBe('BEAM_ERR_LIMIT_REACHED');
      // The real share next door is unaffected.
      expect((await request(stack.server.port, stack.agent.host, '/neighbour')).status).toBe(200);
    } finally {
      agent.close();
      for (const v of visitors) v.close();
    }
  });
});

describe(`VisitorLimit (--max-visitors; a quiet gateway visitor counts for VISITOR_IDLE_MS, ${VISITOR_IDLE_MS} ms)`, () => {
  it('admits up to max, frees a quiet visitor after the idle time, never a held session', () => {
    let now = 0;
    const limit = new VisitorLimit(2, { now: () => now });
    expect(limit.enter('ip:a')).toBe(true);
    expect(limit.enter('session:s', true)).toBe(true);
    expect(limit.enter('ip:b')).toBe(false);
    expect(limit.enter('ip:a')).toBe(true);
    now += VISITOR_IDLE_MS - 1;
    expect(limit.enter('ip:b')).toBe(false);
    now += VISITOR_IDLE_MS;
    // ip:a has been quiet long enough; the held session has not gone anywhere.
    expect(limit.enter('ip:b')).toBe(true);
    expect(limit.enter('ip:c')).toBe(false);
    limit.leave('session:s');
    expect(limit.enter('ip:c')).toBe(true);
    expect(limit.retryAfterS).toBe(VISITOR_IDLE_MS / 1000);
    expect(() => new VisitorLimit(0)).toThrow(BeamError);
  });
});

describe(`the agent's idle connections to its origin (ORIGIN_IDLE_SOCKETS, ${ORIGIN_IDLE_SOCKETS})`, () => {
  it('100 requests at once, twice: the second round reuses every connection of the first', async () => {
    const burst = 100;
    expect(burst).toBeLessThanOrEqual(ORIGIN_IDLE_SOCKETS);
    let connections = 0;
    let held: http.ServerResponse[] = [];
    // Answers only once a whole round is in, so every request holds a connection of its own.
    const origin = http.createServer((_req, res) => {
      held.push(res);
      if (held.length < burst) return;
      for (const r of held) r.end('ok');
      held = [];
    });
    origin.on('connection', () => connections++);
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const io = new OriginIo(
      { host: '127.0.0.1', port: (origin.address() as AddressInfo).port },
      { timeoutMs: 5_000, log: pino({ level: 'silent' }), onUnreachable: () => {} },
    );
    const round = (): Promise<string[]> =>
      Promise.all(
        Array.from(
          { length: burst },
          () =>
            new Promise<string>((resolve, reject) => {
              const req = originRequest(io, 'GET', '/', [['host', 'origin']], true);
              req.on('response', (res) => {
                let body = '';
                res.setEncoding('utf8');
                res.on('data', (c: string) => (body += c));
                res.on('end', () => resolve(body));
              });
              req.on('error', reject);
              req.end();
            }),
        ),
      );
    const idle = (): number => Object.values(io.agent.freeSockets).reduce((n, list) => n + (list?.length ?? 0), 0);
    try {
      expect(await round()).toEqual(Array(burst).fill('ok'));
      // Each socket goes back to the pool once its response has ended.
      await new Promise((resolve) => setImmediate(resolve));
      expect(idle()).toBe(burst);
      expect(await round()).toEqual(Array(burst).fill('ok'));
      expect(connections).toBe(burst);
    } finally {
      io.agent.destroy();
      origin.closeAllConnections();
      await new Promise((resolve) => origin.close(resolve));
    }
  });
});
