/**
 * HTTP/2 and gRPC through Beam, side by side with the same origin reached
 * directly, in one run (issue 20):
 *
 *   h2load (Debian nghttp2-client) at 100 concurrent requests over ONE
 *   connection: HTTP/2 (100 streams) against HTTP/1.1 (100 pipelined), to the
 *   gateway of `beam serve` + `beam http` and to the origin itself (Node's
 *   http2 and http servers, 1 KiB responses); HTTP/1.1 over 100 connections
 *   for reference.
 *
 *   gRPC unary calls/s (@grpc/grpc-js client, 64 calls in flight, 64-byte
 *   messages) through the gateway (`--app-protocol http2`) and directly.
 *
 *   npm run build && node dist/bench/h2.js [--seconds 5]
 */
import { type ChildProcess, execFile } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { grpcClient, startGrpcOrigin, type TestClientInstance } from '../test/helpers/grpc.js';
import { numberArg, startJson } from '../test/helpers/services.js';

const run = promisify(execFile);
const SECONDS = numberArg('--seconds', 5);
const children: ChildProcess[] = [];
const KIB = Buffer.alloc(1024, 120);

async function listen(server: http.Server | http2.Http2Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** h2load's req/s, with every request a 2xx (or it throws). */
async function h2load(args: string[]): Promise<number> {
  const { stdout } = await run('h2load', ['-D', String(SECONDS), '--warm-up-time', '1', ...args], { maxBuffer: 16 * 1024 * 1024 });
  const rps = /finished in [^,]+, ([\d.]+) req\/s/.exec(stdout)?.[1];
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  if (!rps || !codes || Number(codes[3]) + Number(codes[4]) > 0) throw new Error(`h2load ${args.join(' ')}:\n${stdout}`);
  return Number(rps);
}

/** Unary calls per second with `inFlight` calls outstanding at all times. */
async function grpcRate(client: TestClientInstance, inFlight = 64): Promise<number> {
  const payload = Buffer.alloc(64, 1);
  const call = (): Promise<void> =>
    new Promise((resolve, reject) => (client['echo'] as (...a: unknown[]) => unknown)(payload, (err: Error | null) => (err ? reject(err) : resolve())));
  // Warm up: the connection, the path.
  await Promise.all(Array.from({ length: inFlight }, call));
  let done = 0;
  const until = performance.now() + SECONDS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      await call();
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return done / ((performance.now() - started) / 1000);
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const h1Origin = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': KIB.length });
    res.end(KIB);
  });
  h1Origin.keepAliveTimeout = 60_000;
  const h2Origin = http2.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': KIB.length });
    res.end(KIB);
  });
  const h1Port = await listen(h1Origin);
  const h2Port = await listen(h2Origin);
  const grpcOrigin = await startGrpcOrigin();

  const node = process.execPath;
  const serve = await startJson(
    node,
    ['bin/beam.js', 'serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'warn'],
    (e) => e['event'] === 'ready',
  );
  children.push(serve.child);
  const port = serve.event['port'] as number;
  const share = async (target: string, extra: string[]): Promise<string> => {
    const a = await startJson(
      node,
      ['bin/beam.js', 'http', target, '--server', `http://127.0.0.1:${port}`, '--json', '--no-inspect', ...extra],
      (e) => e['event'] === 'ready',
    );
    children.push(a.child);
    return `${a.event['name'] as string}.localhost:${port}`;
  };
  const web = await share(`127.0.0.1:${h1Port}`, []);
  const grpcShare = await share(`127.0.0.1:${grpcOrigin.port}`, ['--app-protocol', 'http2']);
  // The gateway's link to each agent comes up (relay first, then direct): let it settle on direct.
  await h2load(['-n', '2000', '-c', '1', '-m', '10', '-H', `:authority: ${web}`, `http://127.0.0.1:${port}/1k`]);

  const gw = `http://127.0.0.1:${port}/1k`;
  const auth = ['-H', `:authority: ${web}`];
  const rows: Array<[string, number, number]> = [];
  rows.push([
    'HTTP/2, 1 connection x 100 streams',
    await h2load(['-c', '1', '-m', '100', `http://127.0.0.1:${h2Port}/`]),
    await h2load(['-c', '1', '-m', '100', ...auth, gw]),
  ]);
  rows.push([
    'HTTP/1.1, 1 connection x 100 pipelined',
    await h2load(['--h1', '-c', '1', '-m', '100', `http://127.0.0.1:${h1Port}/`]),
    await h2load(['--h1', '-c', '1', '-m', '100', ...auth, gw]),
  ]);
  rows.push([
    'HTTP/1.1, 100 connections',
    await h2load(['--h1', '-c', '100', `http://127.0.0.1:${h1Port}/`]),
    await h2load(['--h1', '-c', '100', ...auth, gw]),
  ]);

  const direct = grpcClient(`127.0.0.1:${grpcOrigin.port}`);
  const through = grpcClient(`127.0.0.1:${port}`, grpcShare);
  const grpcDirect = await grpcRate(direct);
  const grpcBeam = await grpcRate(through);
  direct.close();
  through.close();

  process.stdout.write(`\n1 KiB responses, ${SECONDS} s each (req/s)\n\n| | origin direct | through the gateway | gateway / direct |\n|---|---|---|---|\n`);
  for (const [label, d, g] of rows) process.stdout.write(`| ${label} | ${fmt(d)} | ${fmt(g)} | ${(g / d).toFixed(2)}x |\n`);
  process.stdout.write(`| gRPC unary calls/s, 64 in flight | ${fmt(grpcDirect)} | ${fmt(grpcBeam)} | ${(grpcBeam / grpcDirect).toFixed(2)}x |\n`);
  const h2 = rows[0]?.[2] ?? 0;
  const h1 = rows[1]?.[2] ?? 0;
  process.stdout.write(`\nThrough the gateway, HTTP/2 against HTTP/1.1 at 100 concurrent requests on one connection: ${(h2 / h1).toFixed(2)}x\n`);

  await grpcOrigin.close();
  h1Origin.close();
  h2Origin.close();
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    // Agents first, then the server they use.
    for (const c of children.reverse()) c.kill();
    setTimeout(() => process.exit(), 500).unref();
  });
