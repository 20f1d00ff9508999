/** Scripts the network labs run inside their hosts (test/helpers/netlab.ts), with `lab.node(ns, script)`. */

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
