/**
 * Diagnostic: the thinnest reverse proxy Node has, in one process, with no
 * Beam code. Node's http server takes each request and Node's http client
 * (keep-alive) carries it to the origin; heads and bodies pass as they are. No
 * multiplexer, no head codec, no checks. The embedded default (`beam <port>`)
 * does all of this work in one process too, and more, so this rate bounds its
 * own from above on the same cores. bench/first-byte.ts runs it beside the
 * other paths. Prints {"port": n} once it listens.
 *
 *   node dist/bench/diag/bare-proxy.js <origin port>
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const originPort = Number(process.argv[2]);
if (!Number.isInteger(originPort) || originPort <= 0) {
  console.error('usage: bare-proxy.js <origin port>');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const server = http.createServer((req, res) => {
  const upstream = http.request({ host: '127.0.0.1', port: originPort, method: req.method, path: req.url, headers: req.headers, agent }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
    answer.pipe(res);
  });
  upstream.on('error', () => res.destroy());
  req.pipe(upstream);
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as AddressInfo).port })));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
