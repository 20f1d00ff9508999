/**
 * A small multi-page app for browser tests: a login form that sets an
 * HttpOnly session cookie and redirects (303), pages that need the cookie,
 * a JSON echo for fetch bodies, Server-Sent Events, and a script that calls
 * the app by its localhost address, and a WebSocket echo at /ws (for signed-in
 * users). Its pages forbid framing (X-Frame-Options: DENY). It records every
 * request it serves.
 */

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface FixtureApp {
  port: number;
  /** "METHOD /path" of every request served, in order. */
  seen: string[];
  /** The Cookie header of every request that had one. */
  cookies: string[];
  /** Resolves when a request for /held arrives, with the function that lets its answer (a page) go. */
  nextHeld(): Promise<() => void>;
  close(): Promise<void>;
}

const page = (title: string, body: string): string =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>` +
  `<style>body{font:16px system-ui;margin:2rem}</style></head><body>${body}</body></html>`;

export async function startFixtureApp(): Promise<FixtureApp> {
  const sessions = new Map<string, string>();
  const seen: string[] = [];
  const cookies: string[] = [];
  const heldWaiters: Array<(release: () => void) => void> = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    seen.push(`${req.method} ${url.pathname}`);
    if (req.headers.cookie) cookies.push(req.headers.cookie);
    const sid = /(?:^|;\s*)session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    const user = sid ? sessions.get(sid) : undefined;
    const html = (status: number, title: string, body: string): void => {
      // No framing at all, as Django sets by default: Beam's own frame must still show the app.
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'x-frame-options': 'DENY' });
      res.end(page(title, body));
    };
    if (url.pathname === '/' && req.method === 'GET') {
      html(
        200,
        'Home',
        `<h1 id="title">Home</h1><p id="who">${user ? `signed in as ${user}` : 'not signed in'}</p><a id="to-login" href="/login">Sign in</a> <a id="to-dashboard" href="/dashboard">Dashboard</a>`,
      );
      return;
    }
    if (url.pathname === '/styled') {
      // A page with a stylesheet its load waits for, and no cookies.
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        '<!doctype html><html><head><meta charset="utf-8"><title>Styled</title><link rel="stylesheet" href="/style.css"></head>' +
          '<body><h1 id="title">Styled</h1></body></html>',
      );
      return;
    }
    if (url.pathname === '/style.css') {
      res.writeHead(200, { 'content-type': 'text/css' });
      res.end('#title { color: rgb(1, 2, 3); }');
      return;
    }
    if (url.pathname === '/away') {
      // An app whose first page sends the browser to another site's sign-in.
      res.writeHead(302, { location: 'https://login.example.com/authorize?client=app', 'set-cookie': 'state=s1; Path=/; HttpOnly' });
      res.end();
      return;
    }
    if (url.pathname === '/enter') {
      // A link that sets a cookie (HttpOnly) and redirects to the landing page.
      res.writeHead(302, { location: '/welcome', 'set-cookie': 'entered=e1; Path=/; HttpOnly; SameSite=Lax' });
      res.end();
      return;
    }
    if (url.pathname === '/held') {
      // Answered when the test says so: a response head still on its way.
      heldWaiters.shift()?.(() => html(200, 'Held', '<h1 id="title">Held</h1>'));
      return;
    }
    if (url.pathname === '/welcome') {
      // A landing page that sets a visit cookie (HttpOnly) and one scripts read, names the app by its
      // localhost address, and registers the app's own worker as a PWA does on its first page.
      const port = (server.address() as AddressInfo).port;
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'x-frame-options': 'DENY',
        'set-cookie': ['visit=v1; Path=/; HttpOnly; SameSite=Lax', 'greeting=hi; Path=/'],
      });
      res.end(
        page(
          'Welcome',
          `<h1 id="title">Welcome</h1><a id="api" href="http://localhost:${port}/api/me">me</a><p id="sw"></p><p id="server-cookies"></p>
<script>
const sw = (t) => { document.getElementById('sw').textContent = t; };
if (navigator.serviceWorker) navigator.serviceWorker.register('/app-sw.js').then(() => sw('registered'), () => sw('refused')); else sw('none');
window.serverCookies = () => fetch('/api/cookies').then((r) => r.text()).then((t) => { document.getElementById('server-cookies').textContent = t; return t; });
</script>`,
        ),
      );
      return;
    }
    if (url.pathname === '/login' && req.method === 'GET') {
      html(
        200,
        'Sign in',
        // ?stay: the form's POST answers with a page of its own (200), not a redirect.
        `<h1 id="title">Sign in</h1><form method="POST" action="/login${url.search}"><input id="user" name="user"><button id="submit">Sign in</button></form>`,
      );
      return;
    }
    if (url.pathname === '/login' && req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const name = new URLSearchParams(Buffer.concat(chunks).toString()).get('user') ?? '';
        const id = randomBytes(12).toString('hex');
        sessions.set(id, name);
        const cookies = [`session=${id}; Path=/; HttpOnly; SameSite=Lax`, `csrf=t${id.slice(0, 8)}; Path=/; SameSite=Lax`];
        if (url.searchParams.has('stay')) {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'set-cookie': cookies });
          res.end(page('Signed in', `<h1 id="title">Signed in as ${name}</h1>`));
          return;
        }
        // The session for the server only; a CSRF token its scripts read, as many frameworks do.
        res.writeHead(303, { location: '/dashboard', 'set-cookie': cookies });
        res.end();
      });
      return;
    }
    if (url.pathname === '/dashboard') {
      if (!user) {
        res.writeHead(302, { location: '/login' });
        res.end();
        return;
      }
      const port = (server.address() as AddressInfo).port;
      html(
        200,
        'Dashboard',
        `<h1 id="title">Welcome ${user}</h1><ul id="events"></ul><p id="echo"></p><p id="local"></p><p id="ws"></p><p id="js-cookies"></p><p id="server-cookies"></p><p id="sw"></p>
<script>
const events = new EventSource('/events');
events.onmessage = (e) => { const li = document.createElement('li'); li.textContent = e.data; document.getElementById('events').append(li); };
const body = new Uint8Array(200000).map((_, i) => (i * 7) % 251);
fetch('/api/echo', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } })
  .then((r) => r.json()).then((j) => { document.getElementById('echo').textContent = j.length + ' ' + j.sha256; });
fetch('http://localhost:${port}/api/me').then((r) => r.json()).then((j) => { document.getElementById('local').textContent = 'me: ' + j.user; });
const ws = new WebSocket('ws://' + location.host + '/ws', ['echo']);
ws.binaryType = 'arraybuffer';
const got = [];
ws.onopen = () => { ws.send('ping 1'); ws.send(new Uint8Array([1, 2, 3, 250])); };
ws.onmessage = (e) => {
  got.push(typeof e.data === 'string' ? e.data : 'bytes ' + Array.from(new Uint8Array(e.data)).join(','));
  if (got.length === 2) { document.getElementById('ws').textContent = ws.protocol + ': ' + got.join(' | '); ws.close(1000, 'done'); }
};
ws.onclose = (e) => { document.getElementById('ws').dataset.closed = e.code + ' ' + e.wasClean; };
// Scripts see the cookies without HttpOnly, and what they set goes to the server.
document.getElementById('js-cookies').textContent = document.cookie.split('; ').map((c) => c.split('=')[0]).sort().join(',');
document.cookie = 'theme=dark; path=/';
fetch('/api/cookies').then((r) => r.text()).then((t) => { document.getElementById('server-cookies').textContent = t; });
// A PWA registers its own worker at the whole site's scope.
const sw = (t) => { document.getElementById('sw').textContent = t; };
if (navigator.serviceWorker) navigator.serviceWorker.register('/app-sw.js').then(() => sw('registered'), () => sw('refused')); else sw('none');
</script>`,
      );
      return;
    }
    if (url.pathname === '/api/me') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ user: user ?? null }));
      return;
    }
    if (url.pathname === '/app-sw.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end("self.addEventListener('fetch', (e) => e.respondWith(new Response('hijacked')));");
      return;
    }
    if (url.pathname === '/api/cookies') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(
        (req.headers.cookie ?? '')
          .split(';')
          .map((c) => c.trim().split('=')[0])
          .filter(Boolean)
          .sort()
          .join(','),
      );
      return;
    }
    if (url.pathname === '/early-ws') {
      // A page that opens a WebSocket as it is parsed, before anything of Beam's page may have run (and asks for no
      // favicon, which a top-level document would fetch through the gateway).
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><html><head><meta charset="utf-8"><title>Early</title><link rel="icon" href="data:,"></head><body><h1 id="title">Early</h1><p id="got"></p>` +
          `<script>const ws = new WebSocket('/ws-open', 'echo'); ws.onopen = () => ws.send('hi'); ws.onmessage = (e) => { document.getElementById('got').textContent = e.data; };</script></body></html>`,
      );
      return;
    }
    if (url.pathname === '/big.html') {
      // HTML of ?bytes=N, chunked (no length): a page that rewrites HTML holds it whole, up to its cap.
      const total = Number(url.searchParams.get('bytes') ?? 0);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      const chunk = Buffer.alloc(64 * 1024, 'a');
      let left = total;
      const more = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.byteLength);
          left -= n;
          if (!res.write(chunk.subarray(0, n))) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
      return;
    }
    if (url.pathname === '/api/moved') {
      // Temporary: the client sends the same request, body and all, to /api/echo.
      res.writeHead(307, { location: '/api/echo' });
      res.end();
      return;
    }
    if (url.pathname === '/api/echo' && req.method === 'POST') {
      const hash = createHash('sha256');
      let length = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        length += c.byteLength;
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ length, sha256: hash.digest('hex') }));
      });
      return;
    }
    if (url.pathname === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let n = 0;
      const tick = setInterval(() => {
        n++;
        res.write(`data: tick ${n}\n\n`);
        if (n === 3) clearInterval(tick);
      }, 100);
      req.on('close', () => clearInterval(tick));
      return;
    }
    html(404, 'Not found', `<h1 id="title">Not found: ${url.pathname}</h1>`);
  });
  // The echo answers signed-in users only: the cookie must travel with the upgrade too.
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => (protocols.has('echo') ? 'echo' : false) });
  server.on('upgrade', (req, socket, head) => {
    seen.push(`WS ${req.url ?? ''}`);
    const sid = /(?:^|;\s*)session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    // /ws-open: an echo for anyone.
    if (req.url !== '/ws-open' && (req.url !== '/ws' || !sid || !sessions.has(sid))) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) =>
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo: ${String(data)}`, { binary: isBinary })),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    cookies,
    nextHeld: () => new Promise((resolve) => heldWaiters.push(resolve)),
    async close() {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
