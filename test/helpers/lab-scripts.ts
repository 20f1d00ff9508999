/** Scripts the network labs run inside their hosts (test/helpers/netlab.ts), with `lab.node(ns, script)`. */

import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './procs.js';

/** The origin, inside the agent's host: /file is `size` random bytes, announced with their sha256. */
export const ORIGIN = (size: number): string => `
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
const body = randomBytes(${size});
const hash = createHash('sha256').update(body).digest('hex');
http.createServer((req, res) => {
  if (req.url === '/file') { res.setHeader('content-length', body.length); res.end(body); }
  else res.end('hello from ' + req.url);
}).listen(3000, '127.0.0.1', () => console.log(JSON.stringify({ hash })));
`;

/** A UDP echo inside the agent's host, on 127.0.0.1:`port`: prints `{ listening }` once bound. */
export const UDP_ECHO = (port: number): string => `
import dgram from 'node:dgram';
const echo = dgram.createSocket('udp4');
echo.on('message', (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
echo.bind(${port}, '127.0.0.1', () => console.log(JSON.stringify({ listening: ${port} })));
`;

/**
 * A UDP client inside the visitor's host: `n` datagrams of 1 to 1,200 random
 * bytes to 127.0.0.1:`port`, each answered before the next (resent after
 * 2 s, as a UDP app would); prints the sha256 of all it sent and of all it got.
 */
export const UDP_ROUND_TRIPS = (port: number, n: number): string => `
import dgram from 'node:dgram';
import { createHash, randomBytes } from 'node:crypto';
const client = dgram.createSocket('udp4');
await new Promise((resolve) => client.bind(0, '127.0.0.1', resolve));
const sent = createHash('sha256'), got = createHash('sha256');
let resends = 0;
for (let i = 0; i < ${n}; i++) {
  const payload = randomBytes(1 + (i % 1200));
  sent.update(payload);
  const reply = await new Promise((resolve) => {
    const send = () => client.send(payload, ${port}, '127.0.0.1');
    const timer = setInterval(() => { resends++; send(); }, 2000);
    client.once('message', (msg) => { clearInterval(timer); resolve(msg); });
    send();
  });
  got.update(reply);
}
client.close();
console.log(JSON.stringify({ sent: sent.digest('hex'), got: got.digest('hex'), resends }));
`;

/** A client inside the visitor's host: GETs a URL, reports progress once, then status, size, sha256 (or the error). */
export const FETCH = (url: string, progressAt = Infinity): string => `
import { createHash } from 'node:crypto';
const started = performance.now();
try {
  const res = await fetch(${JSON.stringify(url)});
  const hash = createHash('sha256');
  let bytes = 0, told = false;
  for await (const chunk of res.body) {
    hash.update(chunk);
    bytes += chunk.length;
    if (!told && bytes >= ${progressAt === Infinity ? 'Infinity' : progressAt}) { told = true; console.log(JSON.stringify({ progress: bytes })); }
  }
  console.log(JSON.stringify({ status: res.status, bytes, hash: hash.digest('hex'), ms: performance.now() - started }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err.cause?.message ?? err.message) }));
}
`;

/**
 * What a browser on the LAN does with `http://<host>:<port>/file`, `host`
 * being a `.local` name: resolves it by mDNS (one A query, as the OS resolver
 * asks), then GETs the path with that Host. Prints the address, then status
 * and the body's sha256. `root`: the project's, where multicast-dns is installed;
 * `caFile`: over https, trusting that authority alone.
 */
export const FETCH_LOCAL_NAME = (host: string, port: number, root: string, caFile?: string): string => `
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import mdnsFactory from ${JSON.stringify(pathToFileURL(path.join(root, 'node_modules/multicast-dns/index.js')).href)};
const mdns = mdnsFactory();
const address = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no mDNS answer for ${host}')), 3000);
  mdns.on('response', (packet) => {
    const a = [...packet.answers, ...packet.additionals].find((rr) => rr.type === 'A' && rr.name === ${JSON.stringify(host)});
    if (a) { clearTimeout(timer); resolve(a.data); }
  });
  mdns.query(${JSON.stringify(host)}, 'A');
});
mdns.destroy();
console.log(JSON.stringify({ address }));
const caFile = ${JSON.stringify(caFile ?? null)};
const options = { host: address, port: ${port}, path: '/file', headers: { host: ${JSON.stringify(`${host}:${port}`)} } };
const get = caFile ? (cb) => https.get({ ...options, servername: ${JSON.stringify(host)}, ca: readFileSync(caFile) }, cb) : (cb) => http.get(options, cb);
get((res) => {
  const hash = createHash('sha256');
  res.on('data', (c) => hash.update(c));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, hash: hash.digest('hex') })));
});
`;

/** A module of this repository's node_modules, as a lab script imports it (a file URL: the scripts run from no package). */
const moduleUrl = (relative: string): string => JSON.stringify(pathToFileURL(path.join(modulesDir(), relative)).href);

/** The repository's node_modules, from the source or from dist/ (the benches run compiled). */
function modulesDir(): string {
  for (const dir of [ROOT, path.dirname(ROOT)]) if (existsSync(path.join(dir, 'node_modules', 'libp2p'))) return path.join(dir, 'node_modules');
  throw new Error(`no node_modules with libp2p at or above ${ROOT}`);
}

/**
 * A stock js-libp2p circuit relay v2 node (no Beam code), as anyone runs one:
 * TCP, Noise, yamux, identify and the relay service with its default limits.
 * Listens on `host`:`port` and prints its multiaddr. Node 20 lacks
 * Promise.withResolvers, which current js-libp2p needs: the script brings it.
 */
export const LIBP2P_RELAY = (host: string, port = 4001): string => `
Promise.withResolvers ??= () => { let resolve, reject; const promise = new Promise((a, b) => { resolve = a; reject = b; }); return { promise, resolve, reject }; };
const { createLibp2p } = await import(${moduleUrl('libp2p/dist/src/index.js')});
const { tcp } = await import(${moduleUrl('@libp2p/tcp/dist/src/index.js')});
const { noise } = await import(${moduleUrl('@chainsafe/libp2p-noise/dist/src/index.js')});
const { yamux } = await import(${moduleUrl('@chainsafe/libp2p-yamux/dist/src/index.js')});
const { identify } = await import(${moduleUrl('@libp2p/identify/dist/src/index.js')});
const { circuitRelayServer } = await import(${moduleUrl('@libp2p/circuit-relay-v2/dist/src/index.js')});
const node = await createLibp2p({
  addresses: { listen: ['/ip4/${host}/tcp/${port}'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), relay: circuitRelayServer() },
});
console.log(JSON.stringify({ relay: node.getMultiaddrs().map(String)[0] }));
`;
