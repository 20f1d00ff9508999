/**
 * Diagnostic: the floor under Beam's request rate on this machine. The
 * thinnest HTTP-over-node-datachannel proxy there can be, with no Beam code:
 * a front process (Node's http server) sends each request's method and path
 * as one data-channel message; a back process forwards it to the origin on
 * undici's pool (keep-alive; the client Beam's agent uses since session 30,
 * which costs less than Node's http client) and sends status and body back
 * as one message. No stream protocol, no flow control, no headers, no validation, no
 * security. Whatever Beam does, it does on top of this much work, so this
 * rate bounds Beam's from above on the same cores.
 *
 * Runs, in one run and interleaved, against one origin: wrk direct to the
 * origin, through the floor proxy, and through Beam (real `beam serve` and
 * `beam http` processes). Needs wrk. Usage (from the project's root):
 *   node dist/bench/diag/floor.js [--reps 3] [--seconds 5]
 * AGENT_ARGS="--no-inspect" adds arguments to `beam http`; NODE_ARGS="--max-semi-space-size=32"
 * adds Node's own flags to both Beam processes.
 */
import { execFile, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import ndc from 'node-datachannel';
import { Pool } from '../../peer-agent/undici-pool.js';
import { startJson } from '../../test/helpers/services.js';
import { type Msg, wire } from '../raw-ndc.js';
import { atLeast, reportTargets } from '../targets.js';

const run = promisify(execFile);

/** Back: answers each message by asking the origin. Message: u32 id, then "METHOD path". */
function back(originPort: number): void {
  const pc = new ndc.PeerConnection('back', { iceServers: [] });
  const apply = wire(pc, (m) => process.send!(m));
  process.on('message', (m: Msg) => apply(m));
  const pool = new Pool(`http://127.0.0.1:${originPort}`, { headersTimeout: 0, bodyTimeout: 0 });
  const keep: ndc.DataChannel[] = [];
  pc.onDataChannel((dc) => {
    keep.push(dc);
    dc.onMessage((msg) => {
      const buf = Buffer.from(msg as Buffer);
      const id = buf.readUInt32BE(0);
      const [method, path] = buf.subarray(4).toString('latin1').split(' ');
      const chunks: Buffer[] = [];
      let status = 502;
      pool.dispatch(
        { method: method ?? 'GET', path: path ?? '/', headers: [] },
        {
          onRequestStart() {},
          onResponseStart(_c, code) {
            status = code;
          },
          onResponseData(_c, chunk) {
            chunks.push(chunk);
          },
          onResponseEnd() {
            const body = Buffer.concat(chunks);
            const out = Buffer.allocUnsafe(6 + body.length);
            out.writeUInt32BE(id, 0);
            out.writeUInt16BE(status, 4);
            body.copy(out, 6);
            dc.sendMessageBinary(out);
          },
          onResponseError() {
            const out = Buffer.allocUnsafe(6);
            out.writeUInt32BE(id, 0);
            out.writeUInt16BE(502, 4);
            dc.sendMessageBinary(out);
          },
        },
      );
    });
  });
}

/** Front: an http server that puts each request on the channel and answers from the reply. */
async function front(originPort: number): Promise<{ port: number; backPid: number; close: () => void }> {
  const child = fork(fileURLToPath(import.meta.url), ['back', String(originPort)]);
  const pc = new ndc.PeerConnection('front', { iceServers: [] });
  const apply = wire(pc, (m) => child.send(m));
  child.on('message', (m: Msg) => apply(m));
  const dc = pc.createDataChannel('floor');
  await new Promise<void>((resolve) => dc.onOpen(resolve));
  const waiting = new Map<number, http.ServerResponse>();
  let nextId = 1;
  dc.onMessage((msg) => {
    const buf = Buffer.from(msg as Buffer);
    const res = waiting.get(buf.readUInt32BE(0));
    if (!res) return;
    waiting.delete(buf.readUInt32BE(0));
    const body = buf.subarray(6);
    res.writeHead(buf.readUInt16BE(4), { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  const server = http.createServer((req, res) => {
    const id = nextId++;
    waiting.set(id, res);
    const head = Buffer.from(`    ${req.method} ${req.url}`, 'latin1');
    head.writeUInt32BE(id, 0);
    req.resume();
    req.on('end', () => dc.sendMessageBinary(head));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    backPid: child.pid!,
    close: () => {
      server.close();
      pc.close();
      child.kill();
    },
  };
}

/** CPU time (user + system) a process has used, in microseconds, from /proc (clock ticks of 10 ms). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** Runs wrk and reports, besides its numbers, the CPU each of `pids` spent per request meanwhile. */
async function wrkCpu(
  pids: Record<string, number>,
  url: string,
  connections: number,
  seconds: number,
  host?: string,
): Promise<{ rps: number; p50: string; cpu: string }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMicros(pid)]));
  const r = await wrk(url, connections, seconds, host);
  const requests = r.rps * seconds;
  const cpu = Object.entries(pids)
    .map(([k, pid]) => `${k} ${((cpuMicros(pid) - before[k]!) / requests).toFixed(0)}`)
    .join(' + ');
  return { ...r, cpu: `${cpu} µs CPU/request` };
}

async function wrk(url: string, connections: number, seconds: number, host?: string): Promise<{ rps: number; p50: string }> {
  const argv = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', url];
  if (host) argv.push('-H', `Host: ${host}`);
  const { stdout } = await run('wrk', argv);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = /^\s*50%\s+(\S+)/m.exec(stdout)?.[1] ?? '?';
  if (/Non-2xx/.test(stdout)) throw new Error(`wrk saw failed responses on ${url}`);
  return { rps, p50 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { reps: { type: 'string', default: '3' }, seconds: { type: 'string', default: '5' } },
  });
  const node = process.execPath;
  const nodeArgs = process.env['NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
  const origin = await startJson(node, [fileURLToPath(new URL('../origin.js', import.meta.url))], (e) => typeof e['port'] === 'number');
  const originPort = origin.event['port'] as number;
  const server = await startJson(
    node,
    // The direct path is what this measures: the default gateway carries its link on the relay instead.
    [...nodeArgs, 'bin/beam.js', 'serve', '--port', '0', '--host', '127.0.0.1', '--gateway-relay', 'never', '--json', '--log-level', 'error'],
    (e) => e['event'] === 'ready',
  );
  const serverPort = server.event['port'] as number;
  const agent = await startJson(
    node,
    [
      ...nodeArgs,
      'bin/beam.js',
      'http',
      `127.0.0.1:${originPort}`,
      '--server',
      `http://127.0.0.1:${serverPort}`,
      '--json',
      '--log-level',
      'error',
      ...(process.env['AGENT_ARGS']?.split(' ').filter(Boolean) ?? []),
    ],
    (e) => e['event'] === 'ready',
  );
  const host = `${agent.event['name'] as string}.localhost:${serverPort}`;
  const gateway = `http://127.0.0.1:${serverPort}`;
  const f = await front(originPort);
  if (process.env['PIN']) {
    // PIN=1: each proxy process on a core of its own (all its threads), to see what cross-core wake-ups cost.
    const pin = (pid: number, cpu: number): Promise<unknown> => run('taskset', ['-a', '-p', '-c', String(cpu), String(pid)]);
    await Promise.all([pin(server.child.pid!, 0), pin(agent.child.pid!, 1), pin(process.pid, 0), pin(f.backPid, 1)]);
  }
  const seconds = Number(values.seconds);
  await wrk(`http://127.0.0.1:${f.port}/1k`, 10, 1);
  await wrk(`${gateway}/1k`, 10, 1, host);
  const ratios = new Map<number, number[]>();
  for (const c of [10, 100]) {
    for (let rep = 0; rep < Number(values.reps); rep++) {
      const o = origin.child.pid!;
      const d = await wrkCpu({ origin: o }, `http://127.0.0.1:${originPort}/1k`, c, seconds);
      const fl = await wrkCpu({ front: process.pid, back: f.backPid, origin: o }, `http://127.0.0.1:${f.port}/1k`, c, seconds);
      const b = await wrkCpu({ gateway: server.child.pid!, agent: agent.child.pid!, origin: o }, `${gateway}/1k`, c, seconds, host);
      console.log(
        `c${c}: direct ${d.rps.toFixed(0)} req/s (p50 ${d.p50}), floor ${fl.rps.toFixed(0)} (p50 ${fl.p50}) = ${(fl.rps / d.rps).toFixed(3)}x direct,` +
          ` beam ${b.rps.toFixed(0)} (p50 ${b.p50}) = ${(b.rps / d.rps).toFixed(3)}x direct, beam/floor ${(b.rps / fl.rps).toFixed(2)}\n` +
          `  direct: ${d.cpu}\n  floor: ${fl.cpu}\n  beam: ${b.cpu}`,
      );
      ratios.set(c, [...(ratios.get(c) ?? []), b.rps / fl.rps]);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  reportTargets([10, 100].map((c) => atLeast(`direct path: Beam's req/s / the floor's, ${c} connections`, median(ratios.get(c) ?? []), 0.9, 'ratio')));
  f.close();
  for (const p of [agent, server, origin]) p.child.kill();
  process.exit(0);
}

if (process.argv[2] === 'back') back(Number(process.argv[3]));
else await main();
