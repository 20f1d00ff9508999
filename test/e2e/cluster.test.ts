/**
 * Several `beam serve --redis` nodes on one real Redis (Debian's
 * redis-server): pairing across nodes, one winner in a name race, an agent
 * that survives the death of its node, a node that drains, and a Redis
 * restart the cluster recovers from.
 */
import http from 'node:http';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION } from '../../shared/constants.js';
import { ephemeralIdentity } from '../../transport/identity.js';
import { type Balancer, startBalancer } from '../helpers/balancer.js';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess } from '../helpers/procs.js';
import { freePort, startRedis, startUntil } from '../helpers/services.js';

interface Node {
  proc: BeamProcess;
  port: number;
  url: string;
}

let origin: Origin;
let redis: { port: number; stop(): void };
let redisUrl: string;
const nodes: Node[] = [];
const others: BeamProcess[] = [];

async function startNode(listen = 0, extra: string[] = []): Promise<Node> {
  const proc = new BeamProcess(['serve', '--port', String(listen), '--host', '127.0.0.1', '--json', '--log-level', 'info', '--redis', redisUrl, ...extra]);
  const port = (await proc.waitFor('ready'))['port'] as number;
  const node = { proc, port, url: `http://127.0.0.1:${port}` };
  nodes.push(node);
  return node;
}

function share(server: string, name: string): BeamProcess {
  const p = new BeamProcess(['http', String(origin.port), '--server', server, '--name', name, '--json', '--no-inspect']);
  others.push(p);
  return p;
}

/** What a node without --node-url warns of as it starts. */
const NO_NODE_URL =
  'no --node-url: relayed sessions whose sides land on different nodes never meet (they wait for direct); give each node its own URL with --node-url';

const via = (node: Node, name: string, path: string) => request(node.port, `${name}.localhost:${node.port}`, path, { agent: false });

/** Waits for `check` to pass, up to `deadlineMs`: for recovery that has no event of its own to wait on. Returns how long it took. */
async function within(deadlineMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check().catch(() => false)) return performance.now() - started;
    if (performance.now() - started > deadlineMs) throw new Error(`not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

beforeAll(async () => {
  origin = await startOrigin();
  redis = await startRedis();
  redisUrl = `redis://127.0.0.1:${redis.port}`;
  for (let i = 0; i < 3; i++) await startNode();
});
afterAll(async () => {
  for (const p of others) await p.kill();
  for (const n of nodes) await n.proc.kill();
  redis?.stop();
  await origin?.close();
});

describe('a cluster of nodes on Redis', () => {
  it('pairs an agent on one node with visitors on every node: gateway requests and beam connect', async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    for (const node of nodes) expect((await node.proc.waitForLog({ msg: NO_NODE_URL }))['level']).toBe(40);
    const agent = share(a.url, 'cluster-one');
    await agent.waitFor('ready');
    for (const node of [a, b, c]) {
      const res = await via(node, 'cluster-one', `/via-${node.port}`);
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`hello from /via-${node.port}`);
    }
    // A browser's page opens no first stage on a cluster: it lives in one node's memory, and a balancer spreads a page's requests.
    const boot = await request(b.port, `cluster-one.localhost:${b.port}`, '/', {
      agent: false,
      headers: { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: 'text/html' },
    });
    expect(boot.body.toString()).toContain('var beamStageOpen = false,');
    expect(boot.headers['set-cookie']).toBeUndefined();
    const link = String(agent.events.find((e) => e.event === 'ready')?.['link']).replace(`:${a.port}`, `:${c.port}`);
    const connect = new BeamProcess(['connect', link, '--json']);
    others.push(connect);
    const local = Number(new URL((await connect.waitFor('ready'))['url'] as string).port);
    expect((await request(local, `127.0.0.1:${local}`, '/via-connect')).body.toString()).toBe('hello from /via-connect');
    // The name is taken on every node.
    for (const node of [b, c]) {
      const thief = share(node.url, 'cluster-one');
      expect((await thief.waitFor('error'))['code']).toBe('BEAM_ERR_NAME_TAKEN');
    }
  });

  it('relayed sessions meet at the relay of the node that set them up (--node-url), wherever each side landed; each gateway (--gateway-relay always) too', async () => {
    const ports = [await freePort(), await freePort()];
    const pair = [];
    for (const port of ports) pair.push(await startNode(port, ['--node-url', `http://127.0.0.1:${port}`, '--gateway-relay', 'always']));
    const balancer = await startBalancer(ports);
    const relayAgent = new BeamProcess(['http', String(origin.port), '--server', balancer.url, '--name', 'relayed-everywhere', '--json', '--no-inspect']);
    others.push(relayAgent);
    try {
      const link = (await relayAgent.waitFor('ready'))['link'] as string;
      // Round robin: over four visitors, some land on the agent's node and some on the other.
      for (let i = 0; i < 4; i++) {
        const c = new BeamProcess(['connect', link, '--relay', 'always', '--json']);
        try {
          const ready = await c.waitFor('ready');
          const path = await c.waitFor('session');
          expect(path['path']).toBe('relay');
          const port = Number(new URL(ready['url'] as string).port);
          const res = await request(port, `127.0.0.1:${port}`, `/relayed-${i}`);
          expect(res.body.toString()).toBe(`hello from /relayed-${i}`);
        } finally {
          await c.kill();
        }
      }
      // Each node's gateway reaches the agent over the relay only, wherever the agent is connected.
      for (const n of pair) {
        const res = await via(n, 'relayed-everywhere', `/gateway-${n.port}`);
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe(`hello from /gateway-${n.port}`);
        expect(res.headers['beam-path']).toBe('gateway; via=relay');
      }
      // Nodes that say where they are have nothing to warn of.
      for (const n of pair) expect(n.proc.logs.filter((e) => e['msg'] === NO_NODE_URL)).toEqual([]);
    } finally {
      await relayAgent.kill();
      await balancer.close();
      for (const n of pair) {
        await n.proc.kill();
        nodes.splice(nodes.indexOf(n), 1);
      }
    }
  });

  it('50 agents racing for one name across three nodes: exactly one wins', async () => {
    const peerId = (await ephemeralIdentity()).peerId.toString();
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 50; i++) {
        const node = nodes[i % nodes.length] as Node;
        const socket = connectSocket(node.url, {
          path: SIGNALING_PATH,
          transports: ['websocket'],
          reconnection: false,
          auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'agent', peerId },
        });
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => resolve());
          socket.once('connect_error', reject);
        });
        sockets.push(socket);
      }
      const answers = await Promise.all(
        sockets.map((s) => new Promise<{ ok: boolean; error?: { code: string } }>((resolve) => s.emit('share:register', { name: 'race-for-it' }, resolve))),
      );
      expect(answers.filter((a) => a.ok)).toHaveLength(1);
      expect(answers.filter((a) => !a.ok).map((a) => a.error?.code)).toEqual(Array(49).fill('BEAM_ERR_NAME_TAKEN'));
    } finally {
      for (const s of sockets) s.close();
    }
  });

  it("a visitor on one node, its agent on another: the agent hears of every session before the visitor's first signal", async () => {
    // A session's record and the signals after it cross between nodes in the order they were sent: a signal
    // that reached the agent before its session was dropped, and with it the visitor's path (seen on a busy machine).
    const [a, b] = nodes as [Node, Node];
    const connect = async (node: Node, auth: Record<string, unknown>): Promise<Socket> => {
      const socket = connectSocket(node.url, {
        path: SIGNALING_PATH,
        transports: ['websocket'],
        reconnection: false,
        auth: { protocol: SIGNALING_PROTOCOL_VERSION, ...auth },
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      return socket;
    };
    const agent = await connect(a, { role: 'agent', peerId: (await ephemeralIdentity()).peerId.toString() });
    const visitor = await connect(b, { role: 'visitor' });
    try {
      expect((await agent.emitWithAck('share:register', { name: 'in-order' })).ok).toBe(true);
      const heard: string[] = [];
      const signaled = new Map<string, () => void>();
      agent.on('session:incoming', (m: { sessionId: string }) => heard.push(`session ${m.sessionId}`));
      agent.on('session:signal', (m: { sessionId: string; signal: { type: string } }) => {
        heard.push(`${m.signal.type} ${m.sessionId}`);
        if (m.signal.type === 'offer') signaled.get(m.sessionId)?.();
      });
      const expected: string[] = [];
      // Two signals a session: 40 stay within a visitor's SIGNALS_PER_VISITOR_PER_SECOND.
      for (let i = 0; i < 40; i++) {
        const opened = await visitor.emitWithAck('session:open', { share: 'in-order' });
        expect(opened.ok).toBe(true);
        const sessionId = (opened.value as { sessionId: string }).sessionId;
        const offered = new Promise<void>((resolve) => signaled.set(sessionId, resolve));
        // What a gateway sends at once: the relay's call, then its offer.
        visitor.emit('session:signal', { sessionId, signal: { type: 'relay' } });
        visitor.emit('session:signal', { sessionId, signal: { type: 'offer', sdp: `v=0 ${i}` } });
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          offered,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`session ${i}: no offer within 10 s; the agent heard ${heard.slice(-4).join(', ')}`)), 10_000);
          }),
        ]);
        clearTimeout(timer);
        visitor.emit('session:close', { sessionId });
        expected.push(`session ${sessionId}`, `relay ${sessionId}`, `offer ${sessionId}`);
      }
      expect(heard).toEqual(expected);
    } finally {
      agent.close();
      visitor.close();
    }
  });

  it('kill the node holding an agent: the agent is back with its name on another node, and every node serves it', async () => {
    // A fourth node, so two are left for the tests after this one.
    await startNode();
    const balancer: Balancer = await startBalancer(nodes.map((n) => n.port));
    const agent = share(balancer.url, 'survivor-1');
    try {
      await agent.waitFor('ready');
      const holder = await Promise.race(nodes.map((n) => n.proc.waitForLog({ audit: 'share.registered', share: 'survivor-1' }).then(() => n)));
      const mark = agent.events.length;
      await holder.proc.kill('SIGKILL');
      await agent.waitFor('reconnecting', mark);
      const back = await agent.waitFor((e) => e.event === 'ready' && e['resumed'] === true, mark);
      expect(back['name']).toBe('survivor-1');
      for (const node of nodes.filter((n) => n !== holder)) {
        const res = await via(node, 'survivor-1', '/after-failover');
        expect(res.status, `node ${node.port}`).toBe(200);
      }
      nodes.splice(nodes.indexOf(holder), 1);
    } finally {
      await agent.kill();
      await balancer.close();
    }
  });

  it('SIGTERM: a node sends its agents elsewhere and lets requests in flight finish', async () => {
    const balancer = await startBalancer(nodes.map((n) => n.port));
    const agent = share(balancer.url, 'drained-1');
    try {
      await agent.waitFor('ready');
      const holder = await Promise.race(nodes.map((n) => n.proc.waitForLog({ audit: 'share.registered', share: 'drained-1' }).then(() => n)));
      // A response held open at the origin, through the holder's own gateway.
      let received = '';
      let first!: () => void;
      const gotFirst = new Promise<void>((resolve) => (first = resolve));
      const finished = new Promise<number>((resolve) => {
        http.get({ host: '127.0.0.1', port: holder.port, path: '/sse', headers: { host: `drained-1.localhost:${holder.port}` } }, (r) => {
          r.on('data', (c: Buffer) => {
            received += c.toString();
            first();
          });
          r.on('end', () => resolve(r.statusCode ?? 0));
        });
      });
      await gotFirst;
      const mark = agent.events.length;
      holder.proc.child.kill('SIGTERM');
      await holder.proc.waitFor('draining');
      const back = await agent.waitFor((e) => e.event === 'ready' && e['resumed'] === true, mark);
      expect(back['name']).toBe('drained-1');
      await request(origin.port, `127.0.0.1:${origin.port}`, '/sse-release', { agent: false });
      expect(await finished).toBe(200);
      expect(received).toBe('data: first\n\ndata: second\n\n');
      expect(await holder.proc.exited).toBe(0);
      nodes.splice(nodes.indexOf(holder), 1);
      for (const node of nodes) {
        const res = await via(node, 'drained-1', '/after-drain');
        expect(res.status, res.body.toString()).toBe(200);
      }
    } finally {
      await agent.kill();
      await balancer.close();
    }
  });

  it('a Redis restart: nodes reconnect, names come back, shares work again across nodes; /metrics says so', async () => {
    const [a, b] = nodes as [Node, Node];
    const agent = share(a.url, 'outlives-redis');
    await agent.waitFor('ready');
    const before = await via(b, 'outlives-redis', '/before');
    expect(before.status, before.body.toString()).toBe(200);
    redis.stop();
    const metricsOf = async (node: Node): Promise<string> => (await request(node.port, `127.0.0.1:${node.port}`, '/metrics', { agent: false })).body.toString();
    await within(10_000, async () => /beam_redis_up 0/.test(await metricsOf(b)));
    // The same Redis comes back, empty (no persistence).
    const child = await startUntil(
      'redis-server',
      ['--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      /Ready to accept connections/,
    );
    redis = { port: redis.port, stop: () => void child.kill('SIGKILL') };
    // A node that never served this share (no link to reuse) finds it only through the registry, which
    // the agent's node writes back on its next heartbeat.
    const newcomer = await startNode();
    const tookMs = await within(20_000, async () => (await via(newcomer, 'outlives-redis', '/after-restart')).status === 200);
    console.log(`share found through the registry again ${tookMs.toFixed(0)} ms after Redis came back`);
    expect((await via(b, 'outlives-redis', '/after-restart')).status).toBe(200);
    expect(await metricsOf(b)).toMatch(/beam_redis_up 1/);
    const thief = share(newcomer.url, 'outlives-redis');
    expect((await thief.waitFor('error'))['code']).toBe('BEAM_ERR_NAME_TAKEN');
    // And new registrations work.
    const fresh = share(b.url, 'after-redis-1');
    await fresh.waitFor('ready');
    expect((await via(a, 'after-redis-1', '/fresh')).status).toBe(200);
  });
});
