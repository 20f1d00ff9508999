/**
 * Layer 4, failures: origins that go away, agents that die or drop, names
 * that two agents want, and a hostile signaling client.
 */

import { createHash } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_CONNECT_TIMEOUT_MS, PATH_PROBE_MS, SHARE_RESUME_GRACE_MS, SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION } from '../../shared/constants.js';
import { ephemeralIdentity } from '../../transport/identity.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { patternHash, request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';

let server: ServerHandle;
let origin: Origin;

beforeAll(async () => {
  server = await startServer();
  origin = await startOrigin();
});
afterAll(async () => {
  await server?.proc.kill();
  await origin?.close();
});

/** GETs `path`, hashing the body as it comes; calls `midway` once the first MiB is in. */
function download(
  port: number,
  host: string,
  path: string,
  midway: () => void,
): Promise<{ status: number; bytes: number; hash: string; error: string | undefined }> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
        const hash = createHash('sha256');
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.byteLength;
          if (bytes - c.byteLength < 1024 * 1024 && bytes >= 1024 * 1024) midway();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, hash: hash.digest('hex'), error: undefined }));
        res.on('error', (err) => resolve({ status: res.statusCode ?? 0, bytes, hash: '', error: err.message }));
      })
      .on('error', (err) => resolve({ status: 0, bytes: 0, hash: '', error: err.message }));
  });
}

describe('origin failures', () => {
  it('answers 502 BEAM_ERR_ORIGIN_UNREACHABLE naming the port while the origin is down, and recovers when it is back', async () => {
    const own = await startOrigin();
    const port = own.port;
    const agent = await startAgent(`127.0.0.1:${port}`, server);
    try {
      expect((await request(server.port, agent.host, '/before')).status).toBe(200);
      await own.close();
      const down = await request(server.port, agent.host, '/during');
      expect(down.status).toBe(502);
      expect(down.headers['beam-error']).toBe('BEAM_ERR_ORIGIN_UNREACHABLE');
      expect(down.body.toString()).toContain(`127.0.0.1:${port}`);
      // The agent tells its user, naming the origin.
      const event = await agent.proc.waitFor('origin-unreachable');
      expect(event['origin']).toBe(`127.0.0.1:${port}`);
      const back = await startOrigin(port);
      try {
        const res = await request(server.port, agent.host, '/after');
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe('hello from /after');
      } finally {
        await back.close();
      }
    } finally {
      await agent.proc.kill();
    }
  });

  it('says so at start when nothing listens on the origin port', async () => {
    const own = await startOrigin();
    const port = own.port;
    await own.close();
    const agent = await startAgent(`127.0.0.1:${port}`, server);
    try {
      const event = await agent.proc.waitFor('origin-unreachable');
      expect(event['code']).toBe('ECONNREFUSED');
    } finally {
      await agent.proc.kill();
    }
  });
});

describe('agent failures', () => {
  it('killing the agent mid-response ends the response and fails pending requests with 502, without hanging', async () => {
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    let killedAt = 0;
    // A response whose head and first bytes arrived, and a request the origin never answers.
    const midBody = new Promise<{ status: number; error: string | undefined; received: number }>((resolve) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path: '/stall-mid-body', headers: { host: agent.host } }, (res) => {
          let received = 0;
          res.on('data', (c: Buffer) => {
            received += c.byteLength;
            if (received >= 1000 && killedAt === 0) {
              killedAt = performance.now();
              void agent.proc.kill('SIGKILL');
            }
          });
          res.on('error', (err) => resolve({ status: res.statusCode ?? 0, error: err.message, received }));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, error: undefined, received }));
        })
        .on('error', (err) => resolve({ status: 0, error: err.message, received: 0 }));
    });
    const pending = request(server.port, agent.host, '/hang');
    const cut = await midBody;
    expect(cut.status).toBe(200);
    expect(cut.received).toBe(1000);
    expect(cut.error).toBeDefined(); // truncated, never reported as complete
    const failed = await pending;
    expect(failed.status).toBe(502);
    expect(failed.headers['beam-error']).toBe('BEAM_ERR_AGENT_UNREACHABLE');
    // Signaling saw the agent go; its path then had PATH_PROBE_MS to answer, well before PATH_DEAD_MS would end it.
    expect(performance.now() - killedAt).toBeLessThan(PATH_PROBE_MS + 3_000);
    // While the name is held for the dead agent, visitors get 502 (not 404).
    const held = await request(server.port, agent.host, '/');
    expect(held.status).toBe(502);
    expect(held.headers['beam-error']).toBe('BEAM_ERR_AGENT_UNREACHABLE');
  });

  it('an agent whose connection drops reconnects with the same name, and nobody else can take it meanwhile', async () => {
    const proxy = await startFaultProxy(server.port);
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', `http://127.0.0.1:${proxy.port}`, '--json']);
    try {
      const ready = await proc.waitFor('ready');
      const name = ready['name'] as string;
      const host = `${name}.localhost:${server.port}`;
      expect((await request(server.port, host, '/one')).status).toBe(200);

      const mark = proc.events.length;
      proxy.cut();
      await proc.waitFor('reconnecting', mark);
      // During the drop, the name cannot be claimed by another agent.
      const thief = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--name', name, '--json']);
      const refused = await thief.waitFor('error');
      expect(refused['code']).toBe('BEAM_ERR_NAME_TAKEN');
      expect(await thief.exited).toBe(1);

      const again = await proc.waitFor((e) => e.event === 'ready' && e['resumed'] === true, mark);
      expect(again['name']).toBe(name);
      const res = await request(server.port, host, '/two');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('hello from /two');
    } finally {
      await proc.kill();
      await proxy.close();
    }
  });

  it("an agent that loses the server: the relay carried the gateway's requests and is cut with its connection, the next request rides the direct path that stood by, and once the agent is back a new session brings the relay back", async () => {
    const proxy = await startFaultProxy(server.port);
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', `http://127.0.0.1:${proxy.port}`, '--json']);
    try {
      const ready = await proc.waitFor('ready');
      const host = `${ready['name'] as string}.localhost:${server.port}`;
      const first = await request(server.port, host, '/one');
      expect(first.status).toBe(200);
      expect(first.headers['beam-path']).toBe('gateway; via=relay');
      const session = await proc.waitFor('session');
      // The relay carries the link (it is the agent's connection to the server); direct comes up beside it and stands by.
      const standing = await proc.waitFor(
        (e) =>
          (e.event === 'session' || e.event === 'path') && e['id'] === session['id'] && (e['standby'] as string[] | undefined)?.includes('direct') === true,
      );
      expect(standing['via']).toBe('relay');
      const size = 32 * 1024 * 1024;
      const mark = proc.events.length;
      const got = await download(server.port, host, `/download?size=${size}&seed=11`, () => proxy.cut());
      // The download rode the relay, inside the connection that was cut: it ends short, and says so (no clean end).
      expect(got.status).toBe(200);
      expect(got.bytes).toBeLessThan(size);
      expect(got.error).toBeDefined();
      // The next request needs no new session: direct, which stood by, carries it.
      const res = await request(server.port, host, '/two');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('hello from /two');
      expect(res.headers['beam-path']).toBe('gateway; via=direct');
      // It did lose the server, and came back with its name.
      await proc.waitFor('reconnecting', mark);
      await proc.waitFor((e) => e.event === 'ready' && e['resumed'] === true, mark);
      // Back: the gateway opens a new session with it, on the relay again, and the one cut off from signaling closes.
      const renewed = await proc.waitFor((e) => e.event === 'session' && e['id'] !== session['id'], mark);
      await proc.waitFor((e) => (e.event === 'session' || e.event === 'path') && e['id'] === renewed['id'] && e['via'] === 'relay', mark);
      await proc.waitFor((e) => e.event === 'session-closed' && e['id'] === session['id'], mark);
      expect((await request(server.port, host, '/three')).body.toString()).toBe('hello from /three');
    } finally {
      await proc.kill();
      await proxy.close();
    }
  });

  it('a GET on the relay when the agent loses the server, not answered yet, is sent again on the direct path that stood by: the visitor gets its answer', async () => {
    const proxy = await startFaultProxy(server.port);
    let seen = 0;
    let arrived: () => void = () => {};
    const first = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    // The first try is held (its stream dies with the relay); the second is answered.
    const own = http.createServer((req, res) => {
      seen++;
      if (seen === 1) {
        arrived();
        return;
      }
      res.end(`answered try ${seen} of ${req.url}`);
    });
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
    const proc = new BeamProcess(['http', `127.0.0.1:${(own.address() as { port: number }).port}`, '--server', `http://127.0.0.1:${proxy.port}`, '--json']);
    try {
      const ready = await proc.waitFor('ready');
      const host = `${ready['name'] as string}.localhost:${server.port}`;
      await proc.waitFor(
        (e) => (e.event === 'session' || e.event === 'path') && e['via'] === 'relay' && (e['standby'] as string[] | undefined)?.includes('direct') === true,
      );
      const pending = request(server.port, host, '/held');
      await first;
      proxy.cut();
      const res = await pending;
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('answered try 2 of /held');
      expect(res.headers['beam-path']).toBe('gateway; via=direct');
      expect(seen).toBe(2);
    } finally {
      await proc.kill();
      await proxy.close();
      own.closeAllConnections();
      await new Promise((resolve) => own.close(resolve));
    }
  });

  it('with --gateway-relay never, the gateway link is direct WebRTC alone: a download in flight when the agent loses the server completes byte-exact', async () => {
    const own = await startServer(['--gateway-relay', 'never']);
    const proxy = await startFaultProxy(own.port);
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', `http://127.0.0.1:${proxy.port}`, '--json']);
    try {
      const ready = await proc.waitFor('ready');
      const host = `${ready['name'] as string}.localhost:${own.port}`;
      const first = await request(own.port, host, '/one');
      expect(first.headers['beam-path']).toBe('gateway; via=direct');
      const session = await proc.waitFor('session');
      const size = 32 * 1024 * 1024;
      const expected = await patternHash(size, 13);
      const mark = proc.events.length;
      const got = await download(own.port, host, `/download?size=${size}&seed=13`, () => proxy.cut());
      expect(got.error, `agent: ${proc.stderr.slice(-4000)}`).toBeUndefined();
      expect(got.status).toBe(200);
      expect(got.bytes).toBe(size);
      expect(got.hash).toBe(expected);
      await proc.waitFor('reconnecting', mark);
      await proc.waitFor((e) => e.event === 'ready' && e['resumed'] === true, mark);
      expect((await request(own.port, host, '/two')).body.toString()).toBe('hello from /two');
      // The session the download rode stayed up through the drop, until the agent was back and the gateway renewed it.
      await proc.waitFor((e) => e.event === 'session-closed' && e['id'] === session['id'], mark);
      const since = proc.events.slice(mark);
      const closed = since.findIndex((e) => e.event === 'session-closed' && e['id'] === session['id']);
      expect(closed).toBeGreaterThan(since.findIndex((e) => e.event === 'ready' && e['resumed'] === true));
      await proc.waitFor((e) => e.event === 'session' && e['id'] !== session['id'], mark);
    } finally {
      await proc.kill();
      await proxy.close();
      await own.proc.kill();
    }
  });

  it('a beam connect visitor that loses the signaling server keeps its session: a download in flight completes byte-exact', async () => {
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    const proxy = await startFaultProxy(server.port);
    const link = (await agent.proc.waitFor('ready'))['link'] as string;
    const visitor = new BeamProcess(['connect', link, '--server', `http://127.0.0.1:${proxy.port}`, '--json']);
    try {
      const port = Number(new URL((await visitor.waitFor('ready'))['url'] as string).port);
      const session = await agent.proc.waitFor((e) => e.event === 'session' && e['visitor'] === 'cli');
      // Relay first: the download must ride the direct path, which signaling's loss leaves standing (the relay goes through the server).
      await visitor.waitFor((e) => (e.event === 'session' || e.event === 'path') && e['via'] === 'direct');
      const size = 32 * 1024 * 1024;
      const expected = await patternHash(size, 12);
      const mark = agent.proc.events.length;
      const got = await download(port, `127.0.0.1:${port}`, `/download?size=${size}&seed=12`, () => proxy.cut());
      // On failure, what both sides logged says which one gave up on the path, and why.
      expect(got.error, `agent: ${agent.proc.stderr.slice(-4000)}\nvisitor: ${visitor.stderr.slice(-4000)}`).toBeUndefined();
      expect(got.bytes).toBe(size);
      expect(got.hash).toBe(expected);
      const res = await request(port, `127.0.0.1:${port}`, '/after');
      expect(res.status).toBe(200);
      // The agent kept the session: signaling told it the visitor dropped, and the path still answered.
      expect(agent.proc.events.slice(mark).filter((e) => e.event === 'session-closed' && e['id'] === session['id'])).toEqual([]);
    } finally {
      await visitor.kill();
      await agent.proc.kill();
      await proxy.close();
    }
  });

  it('a session cut off from signaling serves until the name could have moved: after the resume grace, the name routes to its new agent', async () => {
    const proxy = await startFaultProxy(server.port);
    const name = `moved-${Math.floor(Math.random() * 1e6)}`;
    const old = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', `http://127.0.0.1:${proxy.port}`, '--name', name, '--json']);
    const other = http.createServer((_req, res) => res.end('the new owner'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    let next: BeamProcess | undefined;
    try {
      await old.waitFor('ready');
      const host = `${name}.localhost:${server.port}`;
      expect((await request(server.port, host, '/one')).body.toString()).toBe('hello from /one');
      // The request rode the relay, which goes through the server as signaling does; the gateway's direct path
      // comes up beside it and stands by. Once it has:
      await old.waitFor(
        (e) =>
          (e.event === 'session' || e.event === 'path') && e['visitor'] === 'gateway' && (e['standby'] as string[] | undefined)?.includes('direct') === true,
      );
      // The old agent loses the server for good; its direct path to the gateway takes over.
      const mark = old.events.length;
      await proxy.close();
      const cutAt = performance.now();
      await old.waitFor('reconnecting', mark);
      expect((await request(server.port, host, '/two')).body.toString()).toBe('hello from /two');
      // The server holds the name for SHARE_RESUME_GRACE_MS, then anyone may take it.
      await new Promise((resolve) => setTimeout(resolve, SHARE_RESUME_GRACE_MS - (performance.now() - cutAt) + 1_000));
      next = new BeamProcess(['http', `127.0.0.1:${(other.address() as { port: number }).port}`, '--server', server.url, '--name', name, '--json']);
      await next.waitFor('ready');
      const res = await request(server.port, host, '/three');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('the new owner');
    } finally {
      await next?.kill();
      await old.kill();
      await new Promise((resolve) => other.close(resolve));
    }
  }, 60_000);

  it('after a server restart the agent registers again with the same name and serves', async () => {
    const own = await startServer();
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', own.url, '--json']);
    let again: ServerHandle | undefined;
    try {
      const ready = await proc.waitFor('ready');
      const name = ready['name'] as string;
      const mark = proc.events.length;
      await own.proc.kill();
      await proc.waitFor('reconnecting', mark);
      again = await startServer(['--port', String(own.port)]);
      const back = await proc.waitFor((e) => e.event === 'ready' && e['resumed'] === true, mark);
      expect(back['name']).toBe(name);
      const res = await request(again.port, `${name}.localhost:${again.port}`, '/after-restart');
      expect(res.body.toString()).toBe('hello from /after-restart');
    } finally {
      await proc.kill();
      await again?.proc.kill();
    }
  });

  it('two agents asking for the same name: the second gets BEAM_ERR_NAME_TAKEN and exits 1', async () => {
    const first = await startAgent(`127.0.0.1:${origin.port}`, server, ['--name', 'same-name-123']);
    try {
      expect(first.name).toBe('same-name-123');
      const second = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--name', 'same-name-123', '--json']);
      const err = await second.waitFor('error');
      expect(err['code']).toBe('BEAM_ERR_NAME_TAKEN');
      expect(await second.exited).toBe(1);
      expect((await request(server.port, first.host, '/still-mine')).body.toString()).toBe('hello from /still-mine');
    } finally {
      await first.proc.kill();
    }
  });

  it('a name held for an agent that crashed: another machine is told for how long and how to get it back; the same config directory takes it back at once, but never from a live agent', async () => {
    // A server of its own, whose log says when it saw the crashed agent's connection go.
    const server = await startServer(['--log-level', 'debug']);
    const mine = mkdtempSync(path.join(tmpdir(), 'beam-config-'));
    const theirs = mkdtempSync(path.join(tmpdir(), 'beam-config-'));
    const args = ['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--name', 'held-name-123', '--json', '--no-inspect'];
    const crashed = new BeamProcess(args, { BEAM_CONFIG_DIR: mine });
    await crashed.waitFor('ready');
    // The token is kept where only this user can read it.
    expect(statSync(path.join(mine, 'names.json')).mode & 0o777).toBe(0o600);
    await crashed.kill('SIGKILL');
    const host = `held-name-123.localhost:${server.port}`;
    // "disconnected", or "lost a peer with live sessions" once the gateway's warm link is up: the only connection that goes
    // here. A kill with signaling for that link still unread in the agent's socket resets it: "transport error".
    await server.proc.waitForLog((e) => e['reason'] === 'transport close' || e['reason'] === 'transport error');
    // The name is held for the crashed agent, not served.
    expect((await request(server.port, host, '/')).headers['beam-error']).toBe('BEAM_ERR_AGENT_UNREACHABLE');

    const other = new BeamProcess(args, { BEAM_CONFIG_DIR: theirs });
    const err = await other.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_NAME_TAKEN');
    expect(err['message']).toMatch(/held for the agent that had it, which lost its connection, for \d+ s more/);
    expect(err['message']).toContain('same config directory');
    expect(await other.exited).toBe(1);

    const back = new BeamProcess(args, { BEAM_CONFIG_DIR: mine });
    try {
      expect((await back.waitFor('ready'))['name']).toBe('held-name-123');
      expect((await request(server.port, host, '/back')).body.toString()).toBe('hello from /back');
      // A second process from the same directory while the first is live: refused, and the first keeps it.
      const twin = new BeamProcess(args, { BEAM_CONFIG_DIR: mine });
      expect((await twin.waitFor('error'))['code']).toBe('BEAM_ERR_NAME_TAKEN');
      expect(await twin.exited).toBe(1);
      expect((await request(server.port, host, '/still-back')).body.toString()).toBe('hello from /still-back');
    } finally {
      await back.kill('SIGTERM');
      await server.proc.kill();
    }
  });

  it('an agent stopped on purpose (SIGTERM) frees its name at once: no grace period, the next agent gets it', async () => {
    const first = await startAgent(`127.0.0.1:${origin.port}`, server, ['--name', 'freed-name-123']);
    expect(await first.proc.kill('SIGTERM')).toBe(0);
    expect(first.proc.events.at(-1)?.event).toBe('closed');
    const gone = await request(server.port, first.host, '/');
    expect(gone.status).toBe(404);
    expect(gone.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    const next = await startAgent(`127.0.0.1:${origin.port}`, server, ['--name', 'freed-name-123']);
    try {
      expect(next.name).toBe('freed-name-123');
      expect((await request(server.port, next.host, '/mine-now')).body.toString()).toBe('hello from /mine-now');
    } finally {
      await next.proc.kill();
    }
  });

  it('refuses an invalid requested name with BEAM_ERR_NAME_INVALID', async () => {
    const bad = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--name', 'Not_A_Label!', '--json']);
    const err = await bad.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_NAME_INVALID');
    expect(await bad.exited).toBe(1);
  });
});

/** A well-formed peer ID (Ed25519), for hand-made agent handshakes. */
const PEER_ID = (await ephemeralIdentity()).peerId.toString();

describe('hostile signaling clients', () => {
  function connect(auth: unknown): Socket {
    return connectSocket(server.url, { path: SIGNALING_PATH, transports: ['websocket'], auth: auth as object, reconnection: false });
  }

  it('refuses a bad handshake with a coded error', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'BEAM_ERR_BAD_MESSAGE'],
      [{ protocol: 99, role: 'agent', peerId: PEER_ID }, 'BEAM_ERR_BAD_MESSAGE'],
      [{ protocol: SIGNALING_PROTOCOL_VERSION, role: 'root' }, 'BEAM_ERR_BAD_MESSAGE'],
      [{ protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor', gatewayToken: 'guess' }, 'BEAM_ERR_UNAUTHORIZED'],
      // An agent must name the identity visitors will check.
      [{ protocol: SIGNALING_PROTOCOL_VERSION, role: 'agent' }, 'BEAM_ERR_PROTOCOL_VERSION'],
      [{ protocol: SIGNALING_PROTOCOL_VERSION, role: 'agent', peerId: 'not-a-peer-id' }, 'BEAM_ERR_BAD_MESSAGE'],
      [{ protocol: SIGNALING_PROTOCOL_VERSION, role: 'agent', peerId: PEER_ID, relay: 'sometimes' }, 'BEAM_ERR_BAD_MESSAGE'],
    ];
    for (const [auth, code] of cases) {
      const socket = connect(auth);
      const err = await new Promise<Error & { data?: { code: string } }>((resolve) => socket.once('connect_error', resolve));
      expect(err.data?.code, JSON.stringify(auth)).toBe(code);
      socket.close();
    }
  });

  it('answers malformed events with codes and keeps serving everyone else', async () => {
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    const socket = connect({ protocol: SIGNALING_PROTOCOL_VERSION, role: 'agent', peerId: PEER_ID });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    try {
      const ack = (event: string, payload: unknown): Promise<{ ok: boolean; error?: { code: string } }> =>
        new Promise((resolve) => socket.emit(event, payload, resolve));
      expect((await ack('share:register', { name: 42 })).error?.code).toBe('BEAM_ERR_BAD_MESSAGE');
      expect((await ack('share:register', { name: 'x'.repeat(500) })).error?.code).toBe('BEAM_ERR_BAD_MESSAGE');
      expect((await ack('share:register', { name: '-bad-' })).error?.code).toBe('BEAM_ERR_NAME_INVALID');
      expect((await ack('share:register', 'not an object')).error?.code).toBe('BEAM_ERR_BAD_MESSAGE');
      expect((await ack('session:open', { share: agent.name })).error?.code).toBe('BEAM_ERR_UNAUTHORIZED');

      const errors: string[] = [];
      const three = new Promise<void>((resolve) =>
        socket.on('protocol:error', (e: { code: string }) => {
          if (errors.push(e.code) === 3) resolve();
        }),
      );
      socket.emit('session:signal', { sessionId: 'nope', signal: { type: 'offer' } });
      socket.emit('session:signal', { sessionId: 'AAAAAAAAAAAA', signal: { type: 'candidate', candidate: 'x', mid: '0' } });
      socket.emit('share:register', { name: 'no-ack-given' });
      await three;
      expect(errors).toEqual(['BEAM_ERR_BAD_MESSAGE', 'BEAM_ERR_SESSION_NOT_FOUND', 'BEAM_ERR_BAD_MESSAGE']);

      // An oversize packet gets the sender disconnected, nobody else.
      const gone = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
      socket.emit('share:register', { name: 'x'.repeat(200_000) }, () => {});
      await gone;

      const res = await request(server.port, agent.host, '/after-abuse');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('hello from /after-abuse');
    } finally {
      socket.close();
      await agent.proc.kill();
    }
  });

  it('a visitor that opens a session and never offers is dropped after AGENT_CONNECT_TIMEOUT_MS', async () => {
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    const visitor = connect({ protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor' });
    try {
      await new Promise<void>((resolve) => visitor.once('connect', () => resolve()));
      const opened = await new Promise<{ ok: boolean; value?: { sessionId: string } }>((resolve) =>
        visitor.emit('session:open', { share: agent.name }, resolve),
      );
      expect(opened.ok).toBe(true);
      const started = performance.now();
      const closed = await new Promise<{ sessionId: string }>((resolve) => visitor.once('session:closed', resolve));
      const waited = performance.now() - started;
      expect(closed.sessionId).toBe(opened.value?.sessionId);
      expect(waited).toBeGreaterThan(AGENT_CONNECT_TIMEOUT_MS - 1_000);
      expect(waited).toBeLessThan(AGENT_CONNECT_TIMEOUT_MS + 5_000);
      // The agent never announced this visitor, so it announces no departure either (the gateway's warm link is another session).
      expect(agent.proc.events.some((e) => e['id'] === opened.value?.sessionId)).toBe(false);
    } finally {
      visitor.close();
      await agent.proc.kill();
    }
  }, 30_000);
});
