/**
 * Diagnostic: the thinnest reverse proxy Node has, in one process, with no
 * Beam code. Node's http server takes each request and Node's http client
 * (keep-alive) carries it to the origin; heads and bodies pass as they are. No
 * multiplexer, no head codec, no checks. The embedded default (`beam <port>`)
 * does all of this work in one process too, and more, so this rate bounds its
 * own from above on the same cores. bench/first-byte.ts runs it beside the
 * other paths. Prints {"port": n} once it listens.
 *
 * `--threads 2` splits it as `ssh -R` is split over two processes: the http
 * server on the main thread, the origin's http client in a worker thread,
 * requests and answers crossing in batches (one message each way a loop
 * turn, as Beam's multiplexer batches its frames). It buffers whole bodies:
 * for 1 KiB requests only, a measure of what a second thread is worth to the
 * embedded default, whose gateway and agent share one thread today.
 *
 * `--client undici` carries requests to the origin on undici's pool, its
 * answers handed to callbacks (as Beam's agent does since session 30,
 * peer-agent/origin-pool.ts) instead of Node's http client: what the same
 * one process reaches when its origin side costs less.
 *
 *   node dist/bench/diag/bare-proxy.js <origin port> [--threads 2 | --client undici]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Pool } from '../../peer-agent/undici-pool.js';

type Ask = [id: number, method: string, target: string, rawHeaders: string[], body: Uint8Array];
type Answer = [id: number, status: number, rawHeaders: string[], body: Uint8Array];

/** Collects what `send` is given during one loop turn and posts it as one message. */
function batcher<T>(post: (batch: T[]) => void): (item: T) => void {
  let batch: T[] = [];
  return (item) => {
    batch.push(item);
    if (batch.length > 1) return;
    setImmediate(() => {
      const out = batch;
      batch = [];
      post(out);
    });
  };
}

function headerObject(raw: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) out[(raw[i] as string).toLowerCase()] = raw[i + 1] as string;
  return out;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

if (!isMainThread) {
  // The worker: the origin's side.
  const { originPort } = workerData as { originPort: number };
  const send = batcher<Answer>((batch) => parentPort?.postMessage(batch));
  parentPort?.on('message', (batch: Ask[]) => {
    for (const [id, method, target, raw, body] of batch) {
      const upstream = http.request({ host: '127.0.0.1', port: originPort, method, path: target, headers: headerObject(raw), agent }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => send([id, answer.statusCode ?? 502, answer.rawHeaders, Buffer.concat(chunks)]));
      });
      upstream.on('error', () => send([id, 502, [], new Uint8Array()]));
      upstream.end(body);
    }
  });
} else {
  const originPort = Number(process.argv[2]);
  const threads = process.argv.includes('--threads') ? Number(process.argv[process.argv.indexOf('--threads') + 1]) : 1;
  const client = process.argv.includes('--client') ? process.argv[process.argv.indexOf('--client') + 1] : 'node';
  if (
    !Number.isInteger(originPort) ||
    originPort <= 0 ||
    (threads !== 1 && threads !== 2) ||
    (client !== 'node' && client !== 'undici') ||
    (threads === 2 && client === 'undici')
  ) {
    console.error('usage: bare-proxy.js <origin port> [--threads 1|2 | --client node|undici]');
    process.exit(2);
  }
  let handle: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  if (client === 'undici') {
    const pool = new Pool(`http://127.0.0.1:${originPort}`, { headersTimeout: 0, bodyTimeout: 0 });
    const HOP = /^(host|connection|keep-alive|transfer-encoding|upgrade|expect)$/i;
    handle = (req, res) => {
      const headers: string[] = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
        if (!HOP.test(req.rawHeaders[i] as string)) headers.push(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
      const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
      pool.dispatch(
        { method: req.method ?? 'GET', path: req.url ?? '/', headers, body: hasBody ? req : null },
        {
          onRequestStart() {},
          onResponseStart(c, status) {
            const raw = (c.rawHeaders ?? []) as Buffer[];
            const out: string[] = [];
            for (let i = 0; i + 1 < raw.length; i += 2) {
              const name = (raw[i] as Buffer).toString('latin1');
              if (!HOP.test(name)) out.push(name, (raw[i + 1] as Buffer).toString('latin1'));
            }
            res.writeHead(status, out);
          },
          onResponseData(c, chunk) {
            if (!res.write(chunk)) {
              c.pause();
              res.once('drain', () => c.resume());
            }
          },
          onResponseEnd() {
            res.end();
          },
          onResponseError() {
            res.destroy();
          },
        },
      );
    };
  } else if (threads === 1) {
    handle = (req, res) => {
      const upstream = http.request({ host: '127.0.0.1', port: originPort, method: req.method, path: req.url, headers: req.headers, agent }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        answer.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
  } else {
    const worker = new Worker(new URL(import.meta.url), { workerData: { originPort } });
    const waiting = new Map<number, http.ServerResponse>();
    let next = 1;
    const send = batcher<Ask>((batch) => worker.postMessage(batch));
    worker.on('message', (batch: Answer[]) => {
      for (const [id, status, raw, body] of batch) {
        const res = waiting.get(id);
        waiting.delete(id);
        res?.writeHead(
          status,
          raw.filter((_, i) => !/^(connection|keep-alive|transfer-encoding)$/i.test(raw[i - (i % 2)] as string)),
        );
        res?.end(body);
      }
    });
    handle = (req, res) => {
      const id = next++;
      waiting.set(id, res);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => send([id, req.method ?? 'GET', req.url ?? '/', req.rawHeaders, Buffer.concat(chunks)]));
    };
  }
  const server = http.createServer(handle);
  server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as AddressInfo).port })));
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}
