/**
 * The server's own access control: `beam serve --token-file` (agents need a
 * token; tokens reserve names), per-address limits on connections,
 * registrations and sessions, and `--trust-proxy` behind a reverse proxy.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BeamServer, startBeamServer } from '../../gateway/server.js';
import { SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION } from '../../shared/constants.js';
import { ephemeralIdentity } from '../../transport/identity.js';
import { loadEngine } from '../../transport/index.js';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type ServerHandle, startAgent } from '../helpers/procs.js';

const ALICE = 'alice-0123456789abcdef';
const BOB = 'bob-0123456789abcdef01';
const dir = mkdtempSync(path.join(tmpdir(), 'beam-tokens-'));
const PEER_ID = (await ephemeralIdentity()).peerId.toString();

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await origin?.close();
});

function tokenFile(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

async function serve(extra: string[]): Promise<{ proc: BeamProcess; port: number; url: string }> {
  const proc = new BeamProcess(['serve', '--port', '0', '--host', '127.0.0.1', '--json', ...extra]);
  const port = (await proc.waitFor('ready'))['port'] as number;
  return { proc, port, url: `http://127.0.0.1:${port}` };
}

describe('beam serve --token-file', () => {
  it('takes agents with a known token only; a token reserves its names; visitors need none', async () => {
    const server = await serve(['--token-file', tokenFile('tokens', `# agents of this server\n${ALICE}  alice-app alice-api\n${BOB}\n`)]);
    const procs: BeamProcess[] = [];
    const share = (...args: string[]): BeamProcess => {
      const p = new BeamProcess(['http', String(origin.port), '--server', server.url, '--json', '--no-inspect', ...args]);
      procs.push(p);
      return p;
    };
    try {
      for (const args of [[], ['--token', 'not-a-token-of-this-server']]) {
        const refused = share(...args);
        const err = await refused.waitFor('error');
        expect(err['code'], JSON.stringify(args)).toBe('BEAM_ERR_UNAUTHORIZED');
        expect(err['message']).toMatch(args.length ? /not one the server knows/ : /--token/);
        expect(await refused.exited).toBe(1);
      }
      const thief = share('--token', BOB, '--name', 'alice-app');
      expect((await thief.waitFor('error'))['code']).toBe('BEAM_ERR_NAME_RESERVED');

      const alice = share('--token', ALICE, '--name', 'alice-app');
      expect((await alice.waitFor('ready'))['name']).toBe('alice-app');
      const bob = share('--name', 'bobs-thing');
      // BEAM_TOKEN works as --token does.
      const bobEnv = new BeamProcess(['http', String(origin.port), '--server', server.url, '--json', '--no-inspect', '--name', 'bobs-thing'], {
        BEAM_TOKEN: BOB,
      });
      procs.push(bobEnv);
      expect((await bobEnv.waitFor('ready'))['name']).toBe('bobs-thing');
      expect((await bob.waitFor('error'))['code']).toBe('BEAM_ERR_UNAUTHORIZED');

      // Visitors need no token.
      const res = await request(server.port, `alice-app.localhost:${server.port}`, '/with-token');
      expect(res.body.toString()).toBe('hello from /with-token');
    } finally {
      for (const p of procs) await p.kill();
      await server.proc.kill();
    }
  });

  it('refuses a bad token file with BEAM_ERR_CONFIG naming the line', async () => {
    const cases: Array<[string, RegExp]> = [
      [`${ALICE} alice-app\nshort\n`, /:2: a token is at least 16/],
      [`${ALICE} alice-app\n${BOB} alice-app\n`, /:2: "alice-app" is already reserved/],
      [`${ALICE} Not_A_Label!\n`, /:1: .*DNS label/],
      ['# nothing\n', /no tokens/],
    ];
    for (const [i, [text, expected]] of cases.entries()) {
      const p = new BeamProcess(['serve', '--port', '0', '--json', '--token-file', tokenFile(`bad-${i}`, text)]);
      const err = await p.waitFor('error');
      expect(err['code']).toBe('BEAM_ERR_CONFIG');
      expect(err['message']).toMatch(expected);
      expect(await p.exited).toBe(1);
    }
  });
});

describe('per-address limits on signaling', () => {
  let server: BeamServer;
  let handle: ServerHandle;
  beforeAll(async () => {
    server = await startBeamServer(
      { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }) },
      { port: 0, host: '127.0.0.1', limits: { connections: 4, registrationsPerMinute: 2, sessionsPerMinute: 2 } },
    );
    handle = { proc: undefined as unknown as BeamProcess, port: server.port, url: `http://127.0.0.1:${server.port}` };
  });
  afterAll(async () => {
    await server?.close();
  });

  function connect(url: string, role: 'agent' | 'visitor', headers: Record<string, string> = {}): Promise<Socket> {
    const socket = connectSocket(url, {
      path: SIGNALING_PATH,
      transports: ['websocket'],
      auth: { protocol: SIGNALING_PROTOCOL_VERSION, role, ...(role === 'agent' ? { peerId: PEER_ID } : {}) },
      extraHeaders: headers,
      reconnection: false,
    });
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', (err: Error & { data?: { code: string } }) => reject(Object.assign(err, { code: err.data?.code })));
    });
  }
  const ack = (
    socket: Socket,
    event: string,
    payload: unknown,
  ): Promise<{ ok: boolean; value?: { name: string; sessionId: string }; error?: { code: string } }> =>
    new Promise((resolve) => socket.emit(event, payload, resolve));

  it('caps connections, registrations and sessions from one address; the gateway carries web visitors regardless', async () => {
    // The real agent: one connection and one registration from 127.0.0.1.
    const agent = await startAgent(origin.port, handle, ['--no-inspect']);
    const sockets: Socket[] = [];
    try {
      const a = await connect(handle.url, 'agent');
      sockets.push(a);
      expect((await ack(a, 'share:register', {})).ok).toBe(true);
      expect((await ack(a, 'share:register', {})).error?.code).toBe('BEAM_ERR_RATE_LIMITED');

      const v = await connect(handle.url, 'visitor');
      sockets.push(v);
      expect((await ack(v, 'session:open', { share: agent.name })).ok).toBe(true);
      expect((await ack(v, 'session:open', { share: agent.name })).ok).toBe(true);
      const third = await ack(v, 'session:open', { share: agent.name });
      expect(third.error?.code).toBe('BEAM_ERR_RATE_LIMITED');

      sockets.push(await connect(handle.url, 'visitor'));
      const fifth = await connect(handle.url, 'visitor').then(
        (s) => {
          sockets.push(s);
          return undefined;
        },
        (err: { code?: string }) => err.code,
      );
      expect(fifth).toBe('BEAM_ERR_RATE_LIMITED');

      // Web visitors come through the server's own gateway, which none of this limits.
      for (let i = 0; i < 5; i++) expect((await request(server.port, agent.host, `/web-${i}`)).status).toBe(200);
    } finally {
      for (const s of sockets) s.close();
      await agent.proc.kill();
    }
  });

  it("--trust-proxy: each client address behind the proxy has its own budget, and the origin sees the proxy's view", async () => {
    const proxied = await startBeamServer(
      { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }) },
      { port: 0, host: '127.0.0.1', trustProxy: true, limits: { connections: 2 } },
    );
    const url = `http://127.0.0.1:${proxied.port}`;
    const sockets: Socket[] = [];
    const agent = await startAgent(origin.port, { proc: undefined as unknown as BeamProcess, port: proxied.port, url }, ['--no-inspect']);
    try {
      // The agent is one connection from the proxy's own address (no X-Forwarded-For): one left for it.
      sockets.push(await connect(url, 'visitor'));
      const blocked = await connect(url, 'visitor').then(
        () => undefined,
        (err: { code?: string }) => err.code,
      );
      expect(blocked).toBe('BEAM_ERR_RATE_LIMITED');
      for (const client of ['203.0.113.7', '203.0.113.8']) {
        sockets.push(await connect(url, 'visitor', { 'x-forwarded-for': `10.9.9.9, ${client}` }));
        sockets.push(await connect(url, 'visitor', { 'x-forwarded-for': client }));
      }
      const over = await connect(url, 'visitor', { 'x-forwarded-for': '203.0.113.7' }).then(
        () => undefined,
        (err: { code?: string }) => err.code,
      );
      expect(over).toBe('BEAM_ERR_RATE_LIMITED');

      const res = await request(proxied.port, agent.host, '/headers', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9', 'x-forwarded-proto': 'https' } });
      const seen = (JSON.parse(res.body.toString()) as { headers: Record<string, string> }).headers;
      expect(seen['x-forwarded-for']).toBe('203.0.113.9');
      expect(seen['x-forwarded-proto']).toBe('https');
    } finally {
      for (const s of sockets) s.close();
      await agent.proc.kill();
      await proxied.close();
    }
  });
});
