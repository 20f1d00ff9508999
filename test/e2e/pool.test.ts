/**
 * Endpoint pools (`--pool`): several agents, each with its own key and its
 * own origin, serve one name on real `beam serve` processes. Gateway
 * requests and `beam connect` sessions are spread across the members; each
 * member's inspector sees only its own requests; a member killed with
 * SIGKILL drops out, and the requests it held go to the others, except a
 * request with a body, which is never sent twice; the pool works across
 * `beam serve --redis` nodes; and names that are not pools, or another
 * token's pool, can't be mixed with it.
 */
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { close, listen, type Reply, request } from '../helpers/http.js';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';
import { startRedis } from '../helpers/services.js';

/** An origin that says who it is, holds `/slow` until released, and counts each POST by its X-Test-Id. */
class MemberOrigin extends EventEmitter {
  readonly label: string;
  readonly server: http.Server;
  port = 0;
  /** POST bodies received, by X-Test-Id. */
  readonly posts = new Map<string, number>();
  private held: Array<() => void> = [];
  private released = false;

  constructor(label: string) {
    super();
    this.label = label;
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const id = req.headers['x-test-id']?.toString();
        if (req.method === 'POST' && id) this.posts.set(id, (this.posts.get(id) ?? 0) + 1);
        const answer = (): void => {
          res.end(`${this.label}:${req.url}:${Buffer.concat(chunks).byteLength}`);
        };
        if (req.url?.startsWith('/slow') && !this.released) {
          this.held.push(answer);
          this.emit('held', req.method, req.url);
        } else answer();
      });
    });
  }

  async start(): Promise<this> {
    this.port = await listen(this.server);
    return this;
  }

  /** Answers what it holds, and from now on answers /slow at once. */
  release(): void {
    this.released = true;
    for (const answer of this.held.splice(0)) answer();
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return close(this.server);
  }
}

const procs: BeamProcess[] = [];
const origins: MemberOrigin[] = [];
const stops: Array<() => void> = [];
afterAll(async () => {
  for (const p of procs) await p.kill();
  for (const o of origins) await o.close();
  for (const stop of stops) stop();
});

async function origin(label: string): Promise<MemberOrigin> {
  const o = await new MemberOrigin(label).start();
  origins.push(o);
  return o;
}

/** An agent of the pool `name` on `server`, with its own config directory (its own key). */
function member(o: MemberOrigin, server: string, name: string, extra: string[] = []): BeamProcess {
  const configDir = mkdtempSync(path.join(tmpdir(), `beam-pool-${o.label}-`));
  const p = new BeamProcess(['http', String(o.port), '--server', server, '--name', name, '--pool', '--json', ...extra], { BEAM_CONFIG_DIR: configDir });
  procs.push(p);
  return p;
}

const via = (server: ServerHandle | { port: number }, name: string, target: string, options: Parameters<typeof request>[3] = {}): Promise<Reply> =>
  request(server.port, `${name}.localhost:${server.port}`, target, options);

/** Who answered: the origin's label. */
const who = (reply: Reply): string => reply.body.toString().split(':')[0] ?? '';

/** Resolves once a member has its `nth` session from this kind of visitor up. */
function sessionFrom(p: BeamProcess, visitor: string, nth = 1): Promise<unknown> {
  let seen = 0;
  return p.waitFor((e) => e.event === 'session' && e['visitor'] === visitor && ++seen === nth);
}

/** A server and a pool of two members on it, each with its own origin, the gateway's sessions with both up. */
async function pairUp(labelA: string, labelB: string, name: string) {
  const server = await startServer();
  procs.push(server.proc);
  const [a, b] = [await origin(labelA), await origin(labelB)];
  const agentA = member(a, server.url, name, ['--no-inspect']);
  await agentA.waitFor('ready');
  const agentB = member(b, server.url, name, ['--no-inspect']);
  await agentB.waitFor('ready');
  expect((await via(server, name, '/first')).status).toBe(200);
  await sessionFrom(agentB, 'gateway');
  return { server, a, b, agentA, agentB };
}

async function inspected(inspect: string): Promise<string[]> {
  const res = await fetch(`${inspect}/api/requests`);
  const body = (await res.json()) as { requests: Array<{ target: string }> };
  return body.requests.map((r) => r.target);
}

describe('endpoint pools', () => {
  it('spreads gateway requests and beam connect sessions across the members; each inspector sees its own requests only', async () => {
    const server = await startServer();
    procs.push(server.proc);
    const [a, b] = [await origin('A'), await origin('B')];
    const agentA = member(a, server.url, 'pool-spread', ['--inspect', '0']);
    const readyA = await agentA.waitFor('ready');
    const agentB = member(b, server.url, 'pool-spread', ['--inspect', '0']);
    const readyB = await agentB.waitFor('ready');
    expect(readyB['url']).toBe(readyA['url']);
    // Each member has its own key: the link pins none.
    expect(String(readyA['link'])).not.toContain('peer=');

    // The first request finds the pool has a second member; the gateway sets a session up with it.
    expect((await via(server, 'pool-spread', '/first')).status).toBe(200);
    await sessionFrom(agentB, 'gateway');
    const answered: Record<string, string[]> = { A: [], B: [] };
    for (let i = 0; i < 20; i++) {
      const res = await via(server, 'pool-spread', `/spread-${i}`);
      expect(res.status).toBe(200);
      expect(res.body.toString()).toMatch(new RegExp(`^[AB]:/spread-${i}:0$`));
      answered[who(res)]?.push(`/spread-${i}`);
    }
    // Turns among the members that are up: both get a fair share.
    expect(answered['A']?.length).toBeGreaterThanOrEqual(8);
    expect(answered['B']?.length).toBeGreaterThanOrEqual(8);

    // Each agent's inspector holds exactly the requests its own origin answered.
    const seenA = (await inspected(readyA['inspect'] as string)).filter((t) => t.startsWith('/spread-'));
    const seenB = (await inspected(readyB['inspect'] as string)).filter((t) => t.startsWith('/spread-'));
    expect(seenA.sort()).toEqual([...(answered['A'] ?? [])].sort());
    expect(seenB.sort()).toEqual([...(answered['B'] ?? [])].sort());

    // beam connect: the same link reaches both members.
    const connect = new BeamProcess(['connect', String(readyA['link']), '--json']);
    procs.push(connect);
    const local = Number(new URL((await connect.waitFor('ready'))['url'] as string).port);
    expect((await request(local, `127.0.0.1:${local}`, '/connect-first')).status).toBe(200);
    await Promise.all([sessionFrom(agentA, 'cli'), sessionFrom(agentB, 'cli')]);
    const labels = new Set<string>();
    for (let i = 0; i < 6; i++) labels.add(who(await request(local, `127.0.0.1:${local}`, `/connect-${i}`)));
    expect([...labels].sort()).toEqual(['A', 'B']);
    await connect.kill();
    await Promise.all([agentA.kill(), agentB.kill()]);
  });

  it('drops a member that dies: what it held goes to the others, but a request with a body is never sent twice', async () => {
    const { server, a, b, agentA, agentB } = await pairUp('A2', 'B2', 'pool-failover');

    // Two GETs and two POSTs wait at the origins: one of each at each member.
    const heldAt = (o: MemberOrigin, method: string) => once(o, 'held', {}).then(([m]) => expect(m).toBe(method));
    const getsHeld = Promise.all([heldAt(a, 'GET'), heldAt(b, 'GET')]);
    const gets = [via(server, 'pool-failover', '/slow-get-1'), via(server, 'pool-failover', '/slow-get-2')];
    await getsHeld;
    const postsHeld = Promise.all([heldAt(a, 'POST'), heldAt(b, 'POST')]);
    const body = Buffer.alloc(1000, 7);
    const posts = ['p1', 'p2'].map((id) =>
      via(server, 'pool-failover', `/slow-post-${id}`, { method: 'POST', body, headers: { 'x-test-id': id, 'content-type': 'application/octet-stream' } }),
    );
    await postsHeld;
    const postAtA = [...a.posts.keys()][0] as string;

    const killed = performance.now();
    await agentA.kill('SIGKILL');
    b.release();
    const [get1, get2] = (await Promise.all(gets)) as [Reply, Reply];
    const failedOver = performance.now() - killed;
    // The GET that member A held went to B; B answered its own.
    for (const res of [get1, get2]) {
      expect(res.status).toBe(200);
      expect(who(res)).toBe('B2');
    }
    // Within seconds of the kill (the gateway checks the dead member's paths within PATH_PROBE_MS).
    expect(failedOver).toBeLessThan(10_000);
    const [p1, p2] = (await Promise.all(posts)) as [Reply, Reply];
    const [atA, atB] = postAtA === 'p1' ? [p1, p2] : [p2, p1];
    // The POST that reached A is answered with the agent's failure, not sent again to B.
    expect(atA.status).toBe(502);
    expect(JSON.parse(atA.body.toString()).error.code).toBe('BEAM_ERR_AGENT_UNREACHABLE');
    expect(atB.status).toBe(200);
    expect(b.posts.get(postAtA)).toBeUndefined();
    for (const id of ['p1', 'p2']) expect((a.posts.get(id) ?? 0) + (b.posts.get(id) ?? 0)).toBe(1);

    // Every request now goes to the member that is left.
    for (let i = 0; i < 10; i++) {
      const res = await via(server, 'pool-failover', `/after-${i}`);
      expect(res.status).toBe(200);
      expect(who(res)).toBe('B2');
    }
    // A member that comes back joins the rotation again.
    const again = member(a, server.url, 'pool-failover', ['--no-inspect']);
    await again.waitFor('ready');
    a.release();
    const back = sessionFrom(again, 'gateway');
    expect((await via(server, 'pool-failover', '/probe')).status).toBe(200);
    await back;
    const labels = new Set<string>();
    for (let i = 0; i < 6; i++) labels.add(who(await via(server, 'pool-failover', `/back-${i}`)));
    expect([...labels].sort()).toEqual(['A2', 'B2']);
    await Promise.all([again.kill(), agentB.kill()]);
  });

  it('takes a frozen member (SIGSTOP: no crash, no closed socket) out of the rotation within seconds', async () => {
    const { server, agentA, agentB } = await pairUp('F1', 'F2', 'pool-frozen');
    process.kill(agentA.pid, 'SIGSTOP');
    try {
      const frozen = performance.now();
      // Every request is answered, by the member that answers: one the frozen member took goes to the other
      // when its path is given up for dead; new ones skip it once it has been silent for POOL_SILENT_MS.
      let quick = 0;
      for (let i = 0; quick < 10; i++) {
        const started = performance.now();
        const res = await via(server, 'pool-frozen', `/frozen-${i}`);
        expect(res.status).toBe(200);
        expect(who(res)).toBe('F2');
        quick = performance.now() - started < 1_000 ? quick + 1 : 0;
      }
      expect(performance.now() - frozen).toBeLessThan(25_000);
    } finally {
      process.kill(agentA.pid, 'SIGCONT');
    }
    await Promise.all([agentA.kill(), agentB.kill()]);
  });

  it('a member the gateway failed to reach gets its session once it answers again, with no request to prompt it', async () => {
    // No warm links: the first request sets the gateway's sessions up, the first with the first member (A).
    const server = await startServer(['--warm-links', '0', '--log-level', 'debug']);
    procs.push(server.proc);
    const [a, b] = [await origin('L1'), await origin('L2')];
    const agentA = member(a, server.url, 'pool-late', ['--no-inspect']);
    await agentA.waitFor('ready');
    const agentB = member(b, server.url, 'pool-late', ['--no-inspect']);
    await agentB.waitFor('ready');
    process.kill(agentB.pid, 'SIGSTOP');
    try {
      const first = await via(server, 'pool-late', '/first');
      expect(who(first)).toBe('L1');
      // The session the gateway then sets up with B never gets a path.
      await server.proc.waitForLog({ msg: 'a pool member has no session yet; looking again', share: 'pool-late' });
    } finally {
      process.kill(agentB.pid, 'SIGCONT');
    }
    await sessionFrom(agentB, 'gateway');
    const labels = new Set<string>();
    for (let i = 0; i < 6; i++) labels.add(who(await via(server, 'pool-late', `/late-${i}`)));
    expect([...labels].sort()).toEqual(['L1', 'L2']);
    await Promise.all([agentA.kill(), agentB.kill()]);
  });

  it('keeps pools and single shares apart, and a pool to one token on a server with --token-file', async () => {
    const tokenA = 'pool-token-0123456789ab';
    const tokenB = 'pool-token-ba9876543210';
    const dir = mkdtempSync(path.join(tmpdir(), 'beam-pool-tokens-'));
    const file = path.join(dir, 'tokens');
    writeFileSync(file, `${tokenA}\n${tokenB}\n`);
    const server = await startServer(['--token-file', file]);
    procs.push(server.proc);
    const o = await origin('T');
    const first = member(o, server.url, 'pool-token', ['--no-inspect', '--token', tokenA]);
    await first.waitFor('ready');
    const second = member(o, server.url, 'pool-token', ['--no-inspect', '--token', tokenA]);
    await second.waitFor('ready');
    // Another token's agent can't join it, pooled or not.
    const stranger = member(o, server.url, 'pool-token', ['--no-inspect', '--token', tokenB]);
    const refused = await stranger.waitFor('error');
    expect(refused['code']).toBe('BEAM_ERR_POOL_MISMATCH');
    expect(String(refused['message'])).toMatch(/another token's pool/);
    expect(await stranger.exited).toBe(1);
    const single = new BeamProcess(['http', String(o.port), '--server', server.url, '--name', 'pool-token', '--token', tokenA, '--json', '--no-inspect']);
    procs.push(single);
    expect((await single.waitFor('error'))['code']).toBe('BEAM_ERR_POOL_MISMATCH');
    // A single agent's name takes no pool member.
    const alone = new BeamProcess(['http', String(o.port), '--server', server.url, '--name', 'single-one', '--token', tokenA, '--json', '--no-inspect']);
    procs.push(alone);
    await alone.waitFor('ready');
    const joiner = member(o, server.url, 'single-one', ['--no-inspect', '--token', tokenA]);
    const notPool = await joiner.waitFor('error');
    expect(notPool['code']).toBe('BEAM_ERR_POOL_MISMATCH');
    expect(String(notPool['message'])).toMatch(/one agent, not a pool/);
    // --pool needs a name and a server.
    for (const args of [
      ['http', String(o.port), '--server', server.url, '--pool', '--json'],
      ['http', String(o.port), '--name', 'embedded-pool', '--pool', '--json'],
    ]) {
      const bad = new BeamProcess(args);
      procs.push(bad);
      const err = await bad.waitFor('error');
      expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
      expect(String(err['message'])).toMatch(/--pool needs --(name|server)/);
    }
    await Promise.all([first.kill(), second.kill(), alone.kill()]);
  });

  it('works across beam serve --redis nodes: members on two nodes, visitors on either', async () => {
    const redis = await startRedis();
    stops.push(() => redis.stop());
    const redisUrl = `redis://127.0.0.1:${redis.port}`;
    const node1 = await startServer(['--redis', redisUrl]);
    const node2 = await startServer(['--redis', redisUrl]);
    procs.push(node1.proc, node2.proc);
    const [a, b] = [await origin('R1'), await origin('R2')];
    const agentA = member(a, node1.url, 'pool-cluster', ['--no-inspect']);
    await agentA.waitFor('ready');
    const agentB = member(b, node2.url, 'pool-cluster', ['--no-inspect']);
    await agentB.waitFor('ready');
    // Each node's gateway: a session with each member (the second node's are each member's second).
    for (const [i, node] of [node1, node2].entries()) {
      expect((await via(node, 'pool-cluster', '/first')).status).toBe(200);
      await Promise.all([sessionFrom(agentA, 'gateway', i + 1), sessionFrom(agentB, 'gateway', i + 1)]);
    }
    for (const node of [node1, node2]) {
      const labels = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const res = await via(node, 'pool-cluster', `/cluster-${i}`);
        expect(res.status).toBe(200);
        labels.add(who(res));
      }
      expect([...labels].sort(), `through ${node.url}`).toEqual(['R1', 'R2']);
    }
    // A member that leaves on purpose is out at once, on every node.
    await agentB.kill();
    for (const node of [node1, node2]) {
      for (let i = 0; i < 4; i++) expect(who(await via(node, 'pool-cluster', `/left-${i}`))).toBe('R1');
    }
    await agentA.kill();
  });
});
