/**
 * Server scale benchmark (issue: many users on Redis), on loopback, in one run:
 *
 * 1. Idle shares on one node: N light agents (signaling only: connect and
 *    register) from many loopback addresses; the node's RSS and CPU while
 *    they sit idle, and the signaling round trip (p50, p99) under that load.
 * 2. Session setups per second through one node, then through two nodes on
 *    one Redis: light visitors open sessions to light agents, the agent
 *    answers, the visitor closes. With two nodes, agents and visitors are
 *    spread over both, so most sessions cross nodes through Redis.
 *
 *   npm run build && node dist/bench/cluster.js [--shares 10000] [--idle-s 20] [--setup-s 10]
 *     [--visitors 40] [--node-cpu <cores>]
 *
 * --node-cpu caps each node (cgroup cpu quota) so that two nodes on a small
 * machine each have CPU of their own, as on separate machines; the CPU per
 * setup printed for each case shows what a node pays for a setup.
 *
 * Needs redis-server. Targets: 10,000 idle shares in 1 GiB or less per node;
 * two nodes at least 1.7x the session-setup rate of one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION } from '../shared/constants.js';
import { numberArg, type Service, startRedis } from '../test/helpers/services.js';
import { ephemeralIdentity } from '../transport/identity.js';

const SHARES = numberArg('--shares', 10_000);
const IDLE_S = numberArg('--idle-s', 20);
const SETUP_S = numberArg('--setup-s', 10);
/**
 * --node-cpu <cores>: caps each server node at that many cores (a cgroup v1
 * cpu quota, needs root), so that on a small machine both nodes, Redis and
 * the load generator each get CPU of their own, as on separate machines.
 * 0 (the default) leaves the nodes uncapped.
 */
const NODE_CPU = numberArg('--node-cpu', 0);
/** Light visitors opening sessions in a loop, each one session at a time: enough that the nodes, not round trips, set the rate. */
const VISITORS = numberArg('--visitors', 40);
const CGROUP_CPU = '/sys/fs/cgroup/cpu';
const cgroups: string[] = [];
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/beam.js');
const PEER_ID = (await ephemeralIdentity()).peerId.toString();
const children: ChildProcess[] = [];

/** Loopback source addresses, 127.0.<a>.<b>, so per-address limits hold as they would for real clients. */
const address = (i: number): string => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

interface Node {
  child: ChildProcess;
  url: string;
}

function startNode(redis: string): Promise<Node> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--port',
      '0',
      '--host',
      '0.0.0.0',
      '--json',
      '--log-level',
      'warn',
      '--redis',
      redis,
      '--max-connections-per-ip',
      '100000',
      '--registrations-per-minute',
      '1000000',
      '--sessions-per-minute',
      '100000000',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  if (NODE_CPU > 0) capCpu(child.pid!, NODE_CPU);
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as { event: string; port?: number };
      if (e.event === 'ready') resolve({ child, url: `http://127.0.0.1:${e.port}` });
    });
    child.once('exit', (code) => reject(new Error(`node exited ${code}`)));
  });
}

/** Puts a process in a cgroup of its own whose cpu quota is `cores` cores. */
function capCpu(pid: number, cores: number): void {
  const dir = path.join(CGROUP_CPU, `beam-bench-${process.pid}-${pid}`);
  try {
    mkdirSync(dir);
    // A 10 ms period (the default is 100 ms) spreads the quota thinly: a node is never parked for long.
    const period = 10_000;
    writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(period));
    writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(Math.round(period * cores)));
    writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
  } catch (err) {
    throw new Error(`--node-cpu needs root and cgroup v1's cpu controller at ${CGROUP_CPU}: ${(err as Error).message}`);
  }
  cgroups.push(dir);
}

function client(url: string, role: 'agent' | 'visitor', localAddress: string): Promise<Socket> {
  const socket = connectSocket(url, {
    path: SIGNALING_PATH,
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    localAddress,
    auth: { protocol: SIGNALING_PROTOCOL_VERSION, role, ...(role === 'agent' ? { peerId: PEER_ID } : {}) },
  } as Parameters<typeof connectSocket>[1]);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

const ack = <T>(socket: Socket, event: string, payload: unknown): Promise<{ ok: boolean; value?: T; error?: { code: string } }> =>
  new Promise((resolve) => socket.emit(event, payload, resolve));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** CPU seconds (user + system) the process has used. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const percentile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function signalingRtt(url: string, n: number): Promise<{ p50: number; p99: number }> {
  const probe = await client(url, 'visitor', '127.0.255.1');
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await ack(probe, 'session:open', { share: 'no-such-share-here' });
    if (res.error?.code !== 'BEAM_ERR_SHARE_NOT_FOUND') throw new Error(`probe: ${JSON.stringify(res)}`);
    times.push(performance.now() - t0);
  }
  probe.close();
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function idleShares(redis: string): Promise<void> {
  const node = await startNode(redis);
  const pid = node.child.pid!;
  const baseRss = rssMiB(pid);
  const sockets: Socket[] = [];
  const started = performance.now();
  for (let i = 0; i < SHARES; i += 250) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(250, SHARES - i) }, async (_, j) => {
        const s = await client(node.url, 'agent', address(i + j));
        const res = await ack(s, 'share:register', {});
        if (!res.ok) throw new Error(`register: ${JSON.stringify(res.error)}`);
        return s;
      }),
    );
    sockets.push(...batch);
  }
  const registerS = (performance.now() - started) / 1000;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, IDLE_S * 1000));
  const cpuPct = ((cpuSeconds(pid) - cpu0) / ((performance.now() - t0) / 1000)) * 100;
  const rss = rssMiB(pid);
  const rtt = await signalingRtt(node.url, 500);
  console.log(`idle shares: ${sockets.length} registered in ${registerS.toFixed(1)} s`);
  console.log(`  node RSS ${rss.toFixed(0)} MiB (${baseRss.toFixed(0)} MiB empty; target <= 1024 MiB): ${rss <= 1024 ? 'met' : 'NOT met'}`);
  console.log(`  node CPU while idle: ${cpuPct.toFixed(1)} % of one core`);
  console.log(`  signaling round trip under that load: p50 ${rtt.p50.toFixed(2)} ms, p99 ${rtt.p99.toFixed(2)} ms`);
  for (const s of sockets) s.close();
  node.child.kill('SIGKILL');
}

/** Session setups a second with `nodes`: light agents answer every session; light visitors open and close in a loop. */
async function setupRate(nodes: Node[], agents = 40, visitors = VISITORS): Promise<{ rate: number; cpuMsPerSetup: number; redisMsPerSetup: number }> {
  const names: string[] = [];
  const agentSockets: Socket[] = [];
  for (let i = 0; i < agents; i++) {
    const s = await client((nodes[i % nodes.length] as Node).url, 'agent', address(20_000 + i));
    const res = await ack<{ name: string }>(s, 'share:register', {});
    names.push(res.value!.name);
    s.on('session:incoming', (msg: { sessionId: string }) => s.emit('session:signal', { sessionId: msg.sessionId, signal: { type: 'answer', sdp: 'v=0' } }));
    agentSockets.push(s);
  }
  let done = 0;
  let lost = 0;
  let running = true;
  const loops = Array.from({ length: visitors }, async (_, i) => {
    // Each visitor on another node than its agent when there are two: the session crosses Redis.
    const v = await client((nodes[(i + 1) % nodes.length] as Node).url, 'visitor', address(21_000 + i));
    const answers = new Map<string, () => void>();
    // The agent's answer can overtake the acknowledgement of session:open.
    const early = new Set<string>();
    v.on('session:signal', (msg: { sessionId: string }) => {
      const waiting = answers.get(msg.sessionId);
      if (waiting) waiting();
      else early.add(msg.sessionId);
    });
    while (running) {
      const res = await ack<{ sessionId: string }>(v, 'session:open', { share: names[i % names.length] });
      if (!res.ok) throw new Error(`open: ${JSON.stringify(res.error)}`);
      const id = res.value!.sessionId;
      if (!early.delete(id)) {
        const answered = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 5_000);
          answers.set(id, () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        if (!answered) lost++;
      }
      answers.delete(id);
      v.emit('session:close', { sessionId: id });
      done++;
    }
    v.close();
  });
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // warm up
  if (process.env['BEAM_BENCH_DEBUG']) console.log(`after warm-up: ${done} setups`);
  const from = done;
  const cpu0 = nodes.reduce((sum, n) => sum + cpuSeconds(n.child.pid!), 0);
  const redis0 = redisService ? cpuSeconds(redisService.pid) : 0;
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, SETUP_S * 1000));
  const rate = (done - from) / ((performance.now() - t0) / 1000);
  const setups = Math.max(1, done - from);
  // CPU the nodes (all of them together) and Redis spent per setup: what a node must pay for one.
  const cpuMsPerSetup = ((nodes.reduce((sum, n) => sum + cpuSeconds(n.child.pid!), 0) - cpu0) * 1000) / setups;
  const redisMsPerSetup = redisService ? ((cpuSeconds(redisService.pid) - redis0) * 1000) / setups : 0;
  running = false;
  await Promise.all(loops);
  for (const s of agentSockets) s.close();
  if (lost > 0) console.log(`  ${lost} session(s) got no answer within 5 s`);
  return { rate, cpuMsPerSetup, redisMsPerSetup };
}

let redisService: Service | undefined;
try {
  redisService = await startRedis();
  const redis = `redis://127.0.0.1:${redisService.port}`;
  await idleShares(redis);
  const one = [await startNode(redis)];
  console.log('setup: one node');
  const one1 = await setupRate(one);
  const rateOne = one1.rate;
  console.log(`one node: ${rateOne.toFixed(0)}/s; node CPU ${one1.cpuMsPerSetup.toFixed(3)} ms and Redis CPU ${one1.redisMsPerSetup.toFixed(3)} ms per setup`);
  for (const n of one) n.child.kill('SIGKILL');
  const two = [await startNode(redis), await startNode(redis)];
  console.log('setup: two nodes');
  const two2 = await setupRate(two);
  const rateTwo = two2.rate;
  console.log(
    `two nodes: ${rateTwo.toFixed(0)}/s; node CPU (both) ${two2.cpuMsPerSetup.toFixed(3)} ms and Redis CPU ${two2.redisMsPerSetup.toFixed(3)} ms per setup`,
  );
  const cap = NODE_CPU > 0 ? `, each node capped at ${NODE_CPU} core(s)` : '';
  console.log(`session setups${cap}: one node ${rateOne.toFixed(0)}/s, two nodes ${rateTwo.toFixed(0)}/s: ${(rateTwo / rateOne).toFixed(2)}x (target >= 1.7x)`);
} finally {
  for (const c of children) c.kill('SIGKILL');
  redisService?.stop();
  // A cgroup goes once its process has: wait for the exits, then remove them.
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
  for (const dir of cgroups) {
    try {
      rmdirSync(dir);
    } catch {
      // still busy a moment longer; the kernel keeps an empty cgroup harmlessly
    }
  }
}
process.exit(0);
