/**
 * Paths on loopback: the relay through the server, Noise on every path, the
 * agent's identity, and the relay's refusal of sessions signaling did not set
 * up. (NAT scenarios, where the choice of path is forced by the network, are
 * in nat-lab.test.ts.)
 */

import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io as connectSocket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PATH_DEAD_MS, RELAY_PATH, SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION } from '../../shared/constants.js';
import { StreamProtocol } from '../../shared/frames.js';
import { decodeResponseHead, encodeHead, readHead } from '../../shared/http-head.js';
import type { Ack, SessionOpened } from '../../shared/signaling.js';
import { ephemeralIdentity, IDENTITY_FILE } from '../../transport/identity.js';
import { parseLink } from '../../transport/link.js';
import { connectRelay } from '../../transport/relay.js';
import { secure } from '../../transport/secure.js';
import type { VisitorSession } from '../../transport/session.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { patternHash, request, sha256 } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, BeamProcess, type ServerHandle, serveRefusal, startServer } from '../helpers/procs.js';
import { directVisitor } from '../helpers/visitor.js';

let origin: Origin;
let server: ServerHandle;
let configDir: string;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  configDir = await mkdtemp(path.join(tmpdir(), 'beam-identity-'));
});
afterAll(async () => {
  await server?.proc.kill();
  await origin?.close();
});

/** GET through a visitor session; the body as text. */
async function get(session: VisitorSession, target: string): Promise<{ status: number; body: Buffer }> {
  const stream = session.openStream(StreamProtocol.HTTP);
  stream.end(encodeHead({ method: 'GET', target, headers: [], upgrade: false, body: false }));
  const head = decodeResponseHead(await readHead(stream));
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return { status: head.kind === 'response' ? head.status : 0, body: Buffer.concat(chunks) };
}

function agentIn(dir: string, extra: string[] = [], via: ServerHandle = server): Promise<AgentHandle> {
  return startAgentWithEnv(`127.0.0.1:${origin.port}`, via, extra, { BEAM_CONFIG_DIR: dir });
}

async function startAgentWithEnv(target: string, via: ServerHandle, extra: string[], env: NodeJS.ProcessEnv): Promise<AgentHandle> {
  const proc = new BeamProcess(['http', target, '--server', via.url, '--json', ...extra], env);
  const ready = await proc.waitFor('ready');
  const name = ready['name'] as string;
  return { proc, name, url: ready['url'] as string, host: `${name}.localhost:${via.port}` };
}

describe('the relay', () => {
  let proxy: FaultProxy;
  let agent: AgentHandle;

  beforeAll(async () => {
    // The agent reaches the server through a TCP proxy that records every byte.
    proxy = await startFaultProxy(server.port);
    agent = await agentIn(configDir, ['--relay', 'always'], { ...server, url: `http://127.0.0.1:${proxy.port}` });
  });
  afterAll(async () => {
    await agent?.proc.kill();
    await proxy?.close();
  });

  it('carries gateway traffic when the share asks for --relay always, byte-exact', async () => {
    const size = 8 * 1024 * 1024;
    const res = await request(server.port, agent.host, `/download?size=${size}&seed=3`);
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(size);
    expect(res.headers['beam-path']).toBe('gateway; via=relay');
    const expected = await request(server.port, agent.host, `/download?size=${size}&seed=3`);
    expect(sha256(res.body)).toBe(sha256(expected.body));
    const session = await agent.proc.waitFor('session');
    expect(session['visitor']).toBe('gateway');
    expect(session['path']).toBe('gateway');
    expect(session['via']).toBe('relay');
  });

  it('forwards only ciphertext between peers: a marker in request and response never crosses the server in the clear', async () => {
    const marker = 'MARKER-beam-plaintext-5f3a9c';
    const visitor = await directVisitor(server.url, agent.name);
    try {
      expect(visitor.session.path).toBe('relay');
      const before = proxy.seen().length;
      const r = await get(visitor.session, `/${marker}`);
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe(`hello from /${marker}`);
      const seen = proxy.seen();
      // The relay did carry this exchange (the proxy saw traffic), just not in plaintext.
      expect(seen.length).toBeGreaterThan(before + 100);
      expect(seen.includes(Buffer.from(marker))).toBe(false);
      expect(seen.includes(Buffer.from('hello from'))).toBe(false);
    } finally {
      visitor.close();
    }
  });

  it("the server's own gateway, over a private link (here loopback), runs its relay link without Noise: the stream protocol's own bytes, byte-exact", async () => {
    const marker = 'MARKER-beam-gateway-plain-2c7e';
    const before = proxy.seen().length;
    const res = await request(server.port, agent.host, `/${marker}`);
    expect(res.status).toBe(200);
    expect(res.headers['beam-path']).toBe('gateway; via=relay');
    expect(res.body.toString()).toBe(`hello from /${marker}`);
    // The gateway terminates the visitor's HTTP anyway; Noise inside the agent's loopback (or TLS) link hid nothing from anyone.
    const seen = proxy.seen().subarray(before);
    expect(seen.includes(Buffer.from(marker))).toBe(true);
    expect(seen.includes(Buffer.from(`hello from /${marker}`))).toBe(true);
  });

  it('is used by a peer-to-peer visitor too, which verifies the agent against the link', async () => {
    const link = parseLink((await agent.proc.waitFor('ready'))['link'] as string);
    expect(link.share).toBe(agent.name);
    const visitor = await directVisitor(server.url, agent.name, { expectPeer: link.peer });
    try {
      expect(visitor.session.path).toBe('relay');
      const r = await get(visitor.session, '/p2p-relay');
      expect(r.body.toString()).toBe('hello from /p2p-relay');
    } finally {
      visitor.close();
    }
  });

  it('refuses a visitor whose link names another peer: BEAM_ERR_PEER_MISMATCH, no fallback', async () => {
    const stranger = (await ephemeralIdentity()).peerId;
    const attempt = directVisitor(server.url, agent.name, { expectPeer: stranger });
    await expect(attempt).rejects.toMatchObject({ code: 'BEAM_ERR_PEER_MISMATCH' });
  });

  it('refuses to splice a session signaling did not set up, and a token used twice', async () => {
    const refused = (url: string): Promise<{ status: number; code: string | undefined }> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.on('unexpected-response', (_req, res) => {
          resolve({ status: res.statusCode ?? 0, code: res.headers['beam-error'] as string | undefined });
          ws.terminate();
        });
        ws.on('open', () => reject(new Error('relay accepted a forged session')));
        ws.on('error', () => {});
      });
    const base = `ws://127.0.0.1:${server.port}${RELAY_PATH}`;
    expect(await refused(`${base}?session=AAAAAAAAAAAAAAAA&role=visitor&token=BBBBBBBBBBBBBBBBBBBBBBBB`)).toEqual({
      status: 403,
      code: 'BEAM_ERR_RELAY_REFUSED',
    });
    expect(await refused(`${base}?session=x&role=admin&token=y`)).toEqual({ status: 403, code: 'BEAM_ERR_RELAY_REFUSED' });
    expect(await refused(base)).toEqual({ status: 403, code: 'BEAM_ERR_RELAY_REFUSED' });

    // A real session's token works once; a second use of it is refused.
    const socket = connectSocket(server.url, {
      path: SIGNALING_PATH,
      transports: ['websocket'],
      auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor' },
      reconnection: false,
    });
    try {
      const opened = await new Promise<Ack<SessionOpened>>((resolve) => socket.emit('session:open', { share: agent.name }, resolve));
      if (!opened.ok) throw new Error(opened.error.code);
      const url = `${base}?session=${opened.value.sessionId}&role=visitor&token=${opened.value.relayToken}`;
      const first = new WebSocket(url);
      await new Promise<void>((resolve, reject) => {
        first.once('open', () => resolve());
        first.once('error', reject);
      });
      expect(await refused(url)).toEqual({ status: 403, code: 'BEAM_ERR_RELAY_REFUSED' });
      // Nor can anybody take the agent's side with the visitor's token.
      expect(await refused(url.replace('role=visitor', 'role=agent'))).toEqual({ status: 403, code: 'BEAM_ERR_RELAY_REFUSED' });
      first.close();
    } finally {
      socket.close();
    }
  });
});

describe('relay first', () => {
  it('a visitor that opens its session relay first meets the agent at the relay with no relay signal: the agent came with the session', async () => {
    const agent = await agentIn(configDir);
    const socket = connectSocket(server.url, {
      path: SIGNALING_PATH,
      transports: ['websocket'],
      auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor' },
      reconnection: false,
    });
    try {
      const link = parseLink((await agent.proc.waitFor('ready'))['link'] as string);
      const opened = await new Promise<Ack<SessionOpened>>((resolve) => socket.emit('session:open', { share: agent.name, relayFirst: true }, resolve));
      if (!opened.ok) throw new Error(opened.error.code);
      // No signal at all goes to the agent: only the relay, then Noise pinned to the link's peer, which only the agent can finish.
      const pipe = await connectRelay(server.url, { sessionId: opened.value.sessionId, role: 'visitor', token: opened.value.relayToken });
      const secured = await secure(pipe, { role: 'initiator', identity: await ephemeralIdentity(), remotePeer: link.peer, timeoutMs: 5_000 });
      expect(secured.remotePeer.equals(link.peer)).toBe(true);
      pipe.close();
    } finally {
      socket.close();
      await agent.proc.kill();
    }
  });
});

describe('direct paths', () => {
  let agent: AgentHandle;

  beforeAll(async () => {
    agent = await agentIn(configDir, ['--relay', 'never']);
  });
  afterAll(async () => {
    await agent?.proc.kill();
  });

  it('a visitor gets direct, with the agent proven by Noise bound to the DTLS fingerprints', async () => {
    const link = parseLink((await agent.proc.waitFor('ready'))['link'] as string);
    const visitor = await directVisitor(server.url, agent.name, { expectPeer: link.peer });
    try {
      expect(visitor.session.path).toBe('direct');
      expect(visitor.paths.map((p) => p.path)).toEqual(['direct']);
      expect((await get(visitor.session, '/direct')).body.toString()).toBe('hello from /direct');
      const session = await agent.proc.waitFor((e) => e.event === 'session' && e['visitor'] === 'cli');
      expect(session['path']).toBe('direct');
    } finally {
      visitor.close();
    }
  });

  it('a link naming another peer fails the direct handshake with BEAM_ERR_PEER_MISMATCH', async () => {
    const stranger = (await ephemeralIdentity()).peerId;
    await expect(directVisitor(server.url, agent.name, { expectPeer: stranger })).rejects.toMatchObject({ code: 'BEAM_ERR_PEER_MISMATCH' });
  });

  it('--relay never on the share and --relay always on the visitor is a clear error', async () => {
    await expect(directVisitor(server.url, agent.name, { relay: 'always' })).rejects.toMatchObject({ code: 'BEAM_ERR_RELAY_REFUSED' });
  });
});

describe('auto', () => {
  it('starts direct, adds the relay when direct is late, and moves new streams to direct once it is up', async () => {
    const agent = await agentIn(configDir);
    // A 1 ms budget for direct: the relay starts at once, direct keeps trying.
    const visitor = await directVisitor(server.url, agent.name, { directTimeoutMs: 1 });
    try {
      const deadline = Date.now() + 10_000;
      while (visitor.session.path !== 'direct' && Date.now() < deadline) await new Promise((r) => visitor.session.once('path', r));
      expect(visitor.session.path).toBe('direct');
      const kinds = visitor.paths.map((p) => p.path);
      expect(kinds[kinds.length - 1]).toBe('direct');
      // Whatever came first, the relay was started; if it won the race, the switch is announced.
      if (kinds.length > 1) expect(kinds).toEqual(['relay', 'direct']);
      expect((await get(visitor.session, '/after-switch')).body.toString()).toBe('hello from /after-switch');
      if (kinds.length > 1) {
        // This visitor's (the gateway's warm link moves to direct too, as a gateway visitor).
        const moved = await agent.proc.waitFor((e) => e.event === 'path' && e['via'] === 'direct' && e['visitor'] === 'cli');
        expect(moved['path']).toBe('direct');
      }
    } finally {
      visitor.close();
      await agent.proc.kill();
    }
  });
});

/** The UDP ports a process has open, from `ss`. */
function udpPortsOf(pid: number): number[] {
  const out = execFileSync('ss', ['-H', '-uanp'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => line.includes(`pid=${pid},`))
    .map((line) => Number(/:(\d+)\s/.exec(`${line.split(/\s+/)[3]} `)?.[1]))
    .filter((port) => Number.isInteger(port) && port > 0);
}

describe("the gateway's link: beam serve --gateway-relay", () => {
  let relayServer: ServerHandle;
  let proxy: FaultProxy;

  beforeAll(async () => {
    relayServer = await startServer(['--gateway-relay', 'always']);
    proxy = await startFaultProxy(relayServer.port);
  });
  afterAll(async () => {
    await proxy?.close();
    await relayServer?.proc.kill();
  });

  it('always: the gateway reaches an --relay auto share over its own connection to the server only, byte-exact, and no WebRTC on the agent; Noise inside where the link is not private', async () => {
    // 0.0.0.0: Linux connects it to this host, but it is no loopback address (isPrivateLink), so plain http to it counts as a network link.
    const agent = await agentIn(configDir, [], { ...relayServer, url: `http://0.0.0.0:${proxy.port}` });
    try {
      const size = 8 * 1024 * 1024;
      for (let i = 0; i < 3; i++) {
        const res = await request(relayServer.port, agent.host, `/download?size=${size}&seed=${i}`);
        expect(res.status).toBe(200);
        expect(res.headers['beam-path']).toBe('gateway; via=relay');
        expect(sha256(res.body)).toBe(await patternHash(size, i));
      }
      const marker = 'MARKER-beam-gateway-link-8d1e';
      const before = proxy.seen().length;
      const res = await request(relayServer.port, agent.host, `/${marker}`);
      expect(res.body.toString()).toBe(`hello from /${marker}`);
      expect(proxy.seen().length).toBeGreaterThan(before + 100);
      expect(proxy.seen().includes(Buffer.from(marker))).toBe(false);
      // One session, on the relay from its first event, that never moved: the agent set up no peer connection.
      const events = agent.proc.events.filter((e) => e.event === 'session' || e.event === 'path');
      expect(events.length).toBeGreaterThan(0);
      expect(events.filter((e) => e['via'] !== 'relay')).toEqual([]);
      expect(new Set(events.map((e) => e['id'])).size).toBe(1);
      expect(udpPortsOf(agent.proc.pid)).toEqual([]);
    } finally {
      await agent.proc.kill();
    }
  });

  it('always, over a private link: the same downloads byte-exact on the link without Noise, and a beam connect visitor to the same agent still gets Noise', async () => {
    const agent = await agentIn(configDir, [], { ...relayServer, url: `http://127.0.0.1:${proxy.port}` });
    try {
      const size = 8 * 1024 * 1024;
      for (let i = 0; i < 3; i++) {
        const res = await request(relayServer.port, agent.host, `/download?size=${size}&seed=${i + 5}`);
        expect(res.status).toBe(200);
        expect(res.headers['beam-path']).toBe('gateway; via=relay');
        expect(sha256(res.body)).toBe(await patternHash(size, i + 5));
      }
      const marker = 'MARKER-beam-gateway-link-71b4';
      let before = proxy.seen().length;
      expect((await request(relayServer.port, agent.host, `/${marker}`)).body.toString()).toBe(`hello from /${marker}`);
      expect(proxy.seen().subarray(before).includes(Buffer.from(marker))).toBe(true);
      // A peer's session with the same agent, on the same link to the same server: Noise, whatever the server says.
      const visitor = await directVisitor(relayServer.url, agent.name, { relay: 'always' });
      try {
        expect(visitor.session.path).toBe('relay');
        before = proxy.seen().length;
        const r = await get(visitor.session, `/${marker}-peer`);
        expect(r.body.toString()).toBe(`hello from /${marker}-peer`);
        expect(proxy.seen().length).toBeGreaterThan(before + 100);
        expect(proxy.seen().subarray(before).includes(Buffer.from(marker))).toBe(false);
      } finally {
        visitor.close();
      }
    } finally {
      await agent.proc.kill();
    }
  });

  it("always gives way to a share's --relay never: the gateway reaches it over direct WebRTC, not a refusal", async () => {
    const agent = await agentIn(configDir, ['--relay', 'never'], relayServer);
    try {
      const res = await request(relayServer.port, agent.host, '/never');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('hello from /never');
      expect(res.headers['beam-path']).toBe('gateway; via=direct');
    } finally {
      await agent.proc.kill();
    }
  });

  it('refuses a mode it does not know with BEAM_ERR_BAD_OPTION, naming the flag', async () => {
    const refused = await serveRefusal(['--gateway-relay', 'sometimes']);
    expect(refused.code).toBe('BEAM_ERR_BAD_OPTION');
    expect(refused.message).toContain('--gateway-relay must be one of auto, never, always');
    expect(refused.exit).toBe(1);
  });
});

describe('a path that dies', () => {
  it('a stream asked for while a dead path is being replaced waits for the new path instead of failing', async () => {
    // No relay: the path that replaces direct must be a new direct one, and nothing else is up meanwhile.
    const agent = await agentIn(configDir, ['--relay', 'never']);
    const visitor = await directVisitor(server.url, agent.name);
    const rules: string[][] = [];
    try {
      expect(visitor.session.path).toBe('direct');
      expect((await get(visitor.session, '/before')).body.toString()).toBe('hello from /before');
      // Cut the direct path: drop every UDP datagram the agent sends from the ports it has now.
      const ports = udpPortsOf(agent.proc.pid);
      expect(ports.length).toBeGreaterThan(0);
      // Both families: ICE may pair the agent and the visitor over IPv6.
      for (const tool of ['iptables', 'ip6tables']) {
        for (const port of ports) {
          const rule = [tool, 'OUTPUT', '-p', 'udp', '--sport', String(port), '-j', 'DROP'];
          execFileSync(tool, ['-I', ...rule.slice(1)]);
          rules.push(rule);
        }
      }
      // PATH_DEAD_MS notices the cut; the signal lets `finally` lift the rules even if it never does.
      const [kind, code] = await once(visitor.session, 'path-down', { signal: AbortSignal.timeout(PATH_DEAD_MS + 20_000) });
      expect(kind).toBe('direct');
      expect(code).toBe('BEAM_ERR_PEER_GONE');
      // Right now no path is up: a stream opened without waiting is refused...
      expect(visitor.session.path).toBeUndefined();
      expect(() => visitor.session.openStream(StreamProtocol.HTTP)).toThrow(expect.objectContaining({ code: 'BEAM_ERR_PEER_GONE' }));
      // ...and one asked for with stream() is carried by the path that replaces it (a new direct pair, on new ports).
      const stream = await visitor.session.stream(StreamProtocol.HTTP);
      stream.end(encodeHead({ method: 'GET', target: '/during-reconnect', headers: [], upgrade: false, body: false }));
      const head = decodeResponseHead(await readHead(stream));
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      expect(head.kind === 'response' && head.status).toBe(200);
      expect(Buffer.concat(chunks).toString()).toBe('hello from /during-reconnect');
      expect(visitor.session.path).toBe('direct');
    } finally {
      for (const [tool, ...rule] of rules) execFileSync(tool as string, ['-D', ...rule]);
      visitor.close();
      await agent.proc.kill();
    }
  });
});

describe('identity', () => {
  it('is kept under the config directory with mode 0600 and names the same peer across runs', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-identity-'));
    const first = await agentIn(dir);
    const link1 = parseLink((await first.proc.waitFor('ready'))['link'] as string);
    await first.proc.kill();
    const mode = (await stat(path.join(dir, IDENTITY_FILE))).mode & 0o777;
    expect(mode.toString(8)).toBe('600');
    expect((await readFile(path.join(dir, IDENTITY_FILE))).length).toBeGreaterThan(32);
    const second = await agentIn(dir);
    const link2 = parseLink((await second.proc.waitFor('ready'))['link'] as string);
    await second.proc.kill();
    expect(link1.peer?.toString()).toBe(link2.peer?.toString());
    expect(link1.peer?.toString()).toMatch(/^12D3Koo/);
  });

  it('a damaged key file is an error that says what to do, not a silent new identity', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-identity-'));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(dir, IDENTITY_FILE), 'garbage', { mode: 0o600 });
    const proc = new BeamProcess(['http', String(origin.port), '--server', server.url, '--json'], { BEAM_CONFIG_DIR: dir });
    const err = await proc.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_IDENTITY');
    expect(String(err['message'])).toContain('BEAM_CONFIG_DIR');
    expect(await proc.exited).toBe(1);
  });
});
