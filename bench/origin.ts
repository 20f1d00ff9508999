/** The benchmark origin, in its own process: 1 KiB responses and a 100 MiB download from memory. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const KIB = Buffer.alloc(1024, 120);
const CHUNK = Buffer.alloc(64 * 1024, 7);

const server = http.createServer((req, res) => {
  if (req.url === '/1k') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': KIB.length });
    res.end(KIB);
    return;
  }
  const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  if (m) {
    const size = Number(m[1]);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    let sent = 0;
    const write = (): void => {
      while (sent < size) {
        const n = Math.min(CHUNK.length, size - sent);
        sent += n;
        if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          res.once('drain', write);
          return;
        }
      }
      res.end();
    };
    write();
    return;
  }
  res.statusCode = 404;
  res.end();
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
