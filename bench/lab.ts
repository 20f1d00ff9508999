/**
 * What the NAT-lab benchmarks (bench/paths.ts, bench/topology.ts) share:
 * Beam processes inside namespaces, the origin and fetch scripts run there,
 * and localtunnel, the relayed baseline, when LT_SERVER_DIR names a
 * checkout of github.com/localtunnel/server with its npm dependencies (and
 * the `localtunnel` client) installed; its code is never committed here.
 */
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type NetLab, WAN_SERVER } from '../test/helpers/netlab.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(root, 'bin/beam.js');

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

export interface Proc {
  child: ChildProcess;
  /** Every JSON event so far, in order. */
  events: Array<Record<string, unknown>>;
  waitFor(event: string): Promise<Record<string, unknown>>;
}

export function beam(lab: NetLab, ns: string, argv: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = lab.spawn(ns, process.execPath, [BIN, ...argv], env);
  const events: Array<Record<string, unknown>> = [];
  const waiters: Array<{ event: string; resolve: (e: Record<string, unknown>) => void }> = [];
  child.stderr!.resume();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    events.push(e);
    for (const w of waiters.filter((x) => x.event === e['event'])) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(e);
    }
  });
  return {
    child,
    events,
    waitFor(event) {
      const seen = events.find((e) => e['event'] === event);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ event, resolve });
        child.once('exit', (code) => reject(new Error(`beam ${argv[0]} exited ${code} before "${event}": ${JSON.stringify(events)}`)));
      });
    },
  };
}

export const ORIGIN = (bytes: number): string => `
import http from 'node:http';
import { randomBytes } from 'node:crypto';
const body = randomBytes(${bytes});
http.createServer((req, res) => {
  if (req.url === '/file') { res.setHeader('content-length', body.length); res.end(body); }
  else res.end('ok');
}).listen(3000, '0.0.0.0', () => console.log(JSON.stringify({ ready: true })));
`;

/** GETs `url` `reps` times from inside a namespace; each time: ms to the end and bytes. */
export const FETCH = (url: string, reps: number): string => `
for (let i = 0; i < ${reps}; i++) {
  const t = performance.now();
  const res = await fetch(${JSON.stringify(url)});
  let bytes = 0;
  for await (const c of res.body) bytes += c.length;
  console.log(JSON.stringify({ status: res.status, bytes, ms: performance.now() - t }));
}
`;

/** A TCP relay in the wan: the relayed baseline's shape (visitor -> relay -> agent side). */
export const TCP_RELAY = (target: string): string => `
import net from 'node:net';
net.createServer((c) => { const u = net.connect(3000, ${JSON.stringify(target)}); c.pipe(u); u.pipe(c); c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); })
  .listen(9000, ${JSON.stringify(WAN_SERVER)}, () => console.log(JSON.stringify({ ready: true })));
`;

/** GETs `path` from the localtunnel server `reps` times with the tunnel's Host; each time: ms to the end and bytes. */
export const LT_FETCH = (host: string, port: number, tunnelHost: string, reps: number): string => `
import http from 'node:http';
const get = () => new Promise((resolve, reject) => {
  const t = performance.now();
  http.get({ host: ${JSON.stringify(host)}, port: ${port}, path: '/file', headers: { host: ${JSON.stringify(tunnelHost)} }, agent: false }, (res) => {
    let bytes = 0;
    res.on('data', (c) => (bytes += c.length));
    res.on('end', () => resolve({ status: res.statusCode, bytes, ms: performance.now() - t }));
  }).on('error', reject);
});
for (let i = 0; i < ${reps}; i++) console.log(JSON.stringify(await get()));
`;

export const LT_PORT = 9100;

/**
 * localtunnel in the lab: its server where Beam's is (lab.serverNs), its client in the agent's
 * host (behind the NAT, as a user's machine is) pointing at the origin.
 * Resolves with the tunnel's Host header, or undefined when no checkout is set.
 */
export async function startLocaltunnel(lab: NetLab): Promise<string | undefined> {
  const dir = process.env['LT_SERVER_DIR'];
  if (!dir) return undefined;
  // localtunnel's server loads with `-r esm`, which Node 24 and later refuse: LT_NODE names a Node that runs it.
  const ltNode = process.env['LT_NODE'] ?? process.execPath;
  const server = lab.spawn(
    lab.serverNs,
    ltNode,
    ['-r', path.join(dir, 'node_modules/esm'), path.join(dir, 'bin/server'), '--port', String(LT_PORT), '--address', WAN_SERVER, '--domain', 'lt.local'],
    {
      DEBUG: 'localtunnel*',
    },
  );
  server.stdout!.resume();
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    server.stderr!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes('server listening')) resolve();
    });
    server.once('exit', (code) => reject(new Error(`localtunnel server exited ${code}: ${seen.slice(-500)}`)));
  });
  const client = lab.spawn(lab.ha, ltNode, [
    path.join(dir, 'node_modules/localtunnel/bin/lt.js'),
    '--port',
    '3000',
    '--host',
    `http://${WAN_SERVER}:${LT_PORT}`,
  ]);
  client.stderr!.resume();
  const id = await new Promise<string>((resolve, reject) => {
    createInterface({ input: client.stdout! }).on('line', (line) => {
      const m = /your url is: https?:\/\/([a-z0-9-]+)\./.exec(line);
      if (m?.[1]) resolve(m[1]);
    });
    client.once('exit', (code) => reject(new Error(`localtunnel client exited ${code}`)));
  });
  return `${id}.lt.local:${LT_PORT}`;
}
