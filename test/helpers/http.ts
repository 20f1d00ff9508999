/** HTTP clients and origins for tests: plain node:http, so every byte is ours to check. */

import { createHash } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export const sha256 = (b: Buffer | Uint8Array): string => createHash('sha256').update(b).digest('hex');

const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });

/** Sends a request to the gateway at 127.0.0.1:`port` with Host `host`. */
export function request(
  port: number,
  host: string,
  path: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: Buffer | Readable; agent?: http.Agent | false } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: { host, ...options.headers }, agent: options.agent ?? agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body instanceof Readable) options.body.pipe(req);
    else req.end(options.body);
  });
}

/** A readable of `size` deterministic pseudo-random bytes, and its sha256. */
export function patternStream(size: number, seed = 1): { stream: Readable; hash: Promise<string> } {
  const hash = createHash('sha256');
  let sent = 0;
  let x = seed >>> 0 || 1;
  const stream = new Readable({
    read() {
      if (sent >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(64 * 1024, size - sent);
      const whole = Buffer.allocUnsafe(n + 3);
      for (let i = 0; i < n; i += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        whole.writeUInt32LE(x >>> 0, i);
      }
      const chunk = whole.subarray(0, n);
      hash.update(chunk);
      sent += n;
      this.push(chunk);
    },
  });
  const done = new Promise<string>((resolve) => stream.on('end', () => resolve(hash.digest('hex'))));
  return { stream, hash: done };
}

export async function listen(server: http.Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return (server.address() as AddressInfo).port;
}

export function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * Requests the gateway at 127.0.0.1:`port` proxied, finished
 * (beam_gateway_requests_total, all statuses) and in flight (an open
 * WebSocket is one), from its /metrics: both stay put while browsers reach
 * agents peer to peer.
 */
export async function gatewayRequests(port: number): Promise<number> {
  const text = (await request(port, `127.0.0.1:${port}`, '/metrics')).body.toString();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('beam_gateway_requests_total') || line.startsWith('beam_gateway_requests_in_flight')) total += Number(line.split(' ').at(-1));
  }
  return total;
}

/** Writes raw bytes to 127.0.0.1:`port`; resolves with everything answered once the other side closes (a reset counts as closing). */
export function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(answer) : reject(err)));
    socket.write(bytes);
  });
}

/** The sha256 of the origin's /download?size=&seed= body (test/helpers/origin.ts). */
export function patternHash(size: number, seed: number): Promise<string> {
  const { stream, hash } = patternStream(size, seed);
  stream.resume();
  return hash;
}

/** Requests the gateway carried for browser pages in their first stage (beam_gateway_page_requests_total). */
export async function pageRequests(port: number): Promise<number> {
  const text = (await request(port, `127.0.0.1:${port}`, '/metrics')).body.toString();
  return Number(/^beam_gateway_page_requests_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}
