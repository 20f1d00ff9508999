/**
 * The origin server the tests share: a real HTTP server with routes that
 * hash what they receive, send what they are asked to, stream, stall, and
 * count requests.
 */

import { createHash } from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';
import { WebSocketServer } from 'ws';
import { listen, patternStream } from './http.js';

export interface Origin {
  server: http.Server;
  port: number;
  /** Requests seen, by path (without query). */
  hits: Map<string, number>;
  /** Headers of the last request to /headers. */
  lastHeaders: http.IncomingHttpHeaders | undefined;
  /** Bytes of request bodies /upload has read so far, over all its requests: how far behind a sender the origin is. */
  uploadedBytes: number;
  close(): Promise<void>;
}

export async function startOrigin(port = 0): Promise<Origin> {
  const hits = new Map<string, number>();
  const origin: Partial<Origin> = { hits, lastHeaders: undefined, uploadedBytes: 0 };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1);
    switch (url.pathname) {
      case '/upload': {
        // Hashes the body; ?rate=BYTES_PER_SECOND reads it slowly.
        const rate = Number(url.searchParams.get('rate') ?? 0);
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.byteLength;
          origin.uploadedBytes = (origin.uploadedBytes ?? 0) + chunk.byteLength;
          if (rate > 0) {
            req.pause();
            setTimeout(() => req.resume(), (chunk.byteLength / rate) * 1000);
          }
        });
        req.on('end', () => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
        });
        return;
      }
      case '/download': {
        const size = Number(url.searchParams.get('size') ?? 0);
        const { stream } = patternStream(size, Number(url.searchParams.get('seed') ?? 7));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
        stream.pipe(res);
        return;
      }
      case '/chunked': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        let i = 0;
        const timer = setInterval(() => {
          res.write(`chunk ${i}\n`);
          if (++i === 5) {
            clearInterval(timer);
            res.end();
          }
        }, 50);
        return;
      }
      case '/sse': {
        // The second event waits for /sse-release: a client that sees event 0
        // before it asks for the release proves the first event was not buffered.
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: first\n\n');
        server.once('sse-release', () => {
          res.write('data: second\n\n');
          res.end();
        });
        return;
      }
      case '/sse-release':
        server.emit('sse-release');
        res.end('released');
        return;
      case '/headers':
        origin.lastHeaders = req.headers;
        req.resume();
        req.on('end', () => {
          res.setHeader('content-type', 'application/json');
          res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
          res.setHeader('keep-alive', 'timeout=99');
          res.setHeader('x-remove-me', 'secret');
          // An origin cannot claim how the request travelled.
          res.setHeader('beam-path', 'spoofed-by-origin');
          res.setHeader('connection', 'x-remove-me');
          res.end(JSON.stringify({ headers: req.headers, rawHeaders: req.rawHeaders, url: req.url }));
        });
        return;
      case '/hang':
        req.resume();
        return;
      case '/stall-mid-body':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1_000_000 });
        res.write(Buffer.alloc(1000, 97));
        return;
      case '/status': {
        res.statusCode = Number(url.searchParams.get('code') ?? 200);
        res.end(`status ${res.statusCode}`);
        return;
      }
      case '/echo': {
        // Sends the request body back with its Content-Type (the inspector's test origin).
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          res.setHeader('content-type', req.headers['content-type'] ?? 'application/octet-stream');
          res.end(Buffer.concat(chunks));
        });
        return;
      }
      case '/text': {
        // ?size=N bytes of HTML-ish text (compressible), ?type= overrides the Content-Type, ?etag= sets one.
        const size = Number(url.searchParams.get('size') ?? 0);
        const line = '<p>Beam shares a local port peer to peer.</p>\n';
        const body = Buffer.from(line.repeat(Math.ceil(size / line.length) || 0).slice(0, size));
        res.setHeader('content-type', url.searchParams.get('type') ?? 'text/html; charset=utf-8');
        res.setHeader('content-length', body.byteLength);
        const etag = url.searchParams.get('etag');
        if (etag) res.setHeader('etag', `"${etag}"`);
        const cacheControl = url.searchParams.get('cc');
        if (cacheControl) res.setHeader('cache-control', cacheControl);
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      case '/pre-gzipped': {
        const body = zlib.gzipSync(Buffer.from('already compressed by the app '.repeat(100)));
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'content-length': body.byteLength });
        res.end(body);
        return;
      }
      case '/trailers': {
        // Hashes the body, and answers chunked with trailers: the body's hash, and the request's own trailers echoed.
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.byteLength;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-body-sha256, x-request-trailers' });
          res.write(`got ${bytes} bytes\n`);
          res.addTrailers({ 'x-body-sha256': hash.digest('hex'), 'x-request-trailers': JSON.stringify(req.trailers) });
          res.end();
        });
        return;
      }
      case '/early-hints':
        // A 103 before the answer: informational responses are the origin's hop only.
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }, () => res.end('after the hints'));
        return;
      case '/redirect':
        res.writeHead(302, { location: '/headers' });
        res.end();
        return;
      default:
        res.setHeader('content-type', 'text/plain');
        res.end(`hello from ${url.pathname}`);
    }
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const actual = await listen(server, port);
  origin.server = server;
  origin.port = actual;
  origin.close = async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return origin as Origin;
}

/** An origin, a `beam serve` and a `beam http` sharing the origin: the stack most end-to-end files need. */
export interface Stack {
  origin: Origin;
  server: import('./procs.js').ServerHandle;
  agent: import('./procs.js').AgentHandle;
  stop(): Promise<void>;
}

/** `logLevel`: the server's and the agent's (default warn), for tests that show their logs when they fail. */
export async function startStack(logLevel?: string, serverArgs: string[] = []): Promise<Stack> {
  const { startAgent, startServer } = await import('./procs.js');
  const origin = await startOrigin();
  const server = await startServer([...(logLevel ? ['--log-level', logLevel] : []), ...serverArgs]);
  const agent = await startAgent(`127.0.0.1:${origin.port}`, server, logLevel ? ['--log-level', logLevel] : []);
  return {
    origin,
    server,
    agent,
    async stop() {
      await agent.proc.kill();
      await server.proc.kill();
      await origin.close();
    },
  };
}
