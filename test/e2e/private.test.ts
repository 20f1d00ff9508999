/**
 * `--private` shares: the agent checks the secret on every path. Gateway
 * requests carry it (link parameter, then cookie, or header); `beam connect`
 * proves it in the Noise handshake; nothing without it reaches the origin.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
let agent: BeamProcess;
let host: string;
let secret: string;
let link: string;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  agent = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--json', '--private']);
  const ready = await agent.waitFor('ready');
  const url = new URL(ready['url'] as string);
  secret = url.searchParams.get('beam_secret') ?? '';
  host = `${url.hostname}:${server.port}`;
  link = ready['link'] as string;
});
afterAll(async () => {
  await agent?.kill();
  await server?.proc.kill();
  await origin?.close();
});

const seen = (body: Buffer): { url: string; headers: Record<string, string> } =>
  JSON.parse(body.toString()) as { url: string; headers: Record<string, string> };

describe('a private share through the gateway', () => {
  it('prints a browser link with the secret and a beam connect link with peer and secret', () => {
    expect(secret).toMatch(/^[A-Za-z0-9_-]{24}$/);
    const fragment = new URLSearchParams(new URL(link).hash.slice(1));
    expect(fragment.get('secret')).toBe(secret);
    expect(fragment.get('peer')).toMatch(/^12D3Koo/);
  });

  it('answers 401 BEAM_ERR_PRIVATE without the secret or with a wrong one, and the origin never sees it', async () => {
    const before = origin.hits.get('/headers') ?? 0;
    for (const [path, headers] of [
      ['/headers', {}],
      ['/headers?beam_secret=wrong', {}],
      ['/headers', { cookie: 'beam_secret=wrong' }],
      ['/headers', { 'beam-secret': `${secret}x` }],
    ] as Array<[string, Record<string, string>]>) {
      const res = await request(server.port, host, path, { headers });
      expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
      expect(res.headers['beam-error']).toBe('BEAM_ERR_PRIVATE');
    }
    expect(origin.hits.get('/headers') ?? 0).toBe(before);
  });

  it('lets the link in, sets a cookie scoped to the share, and strips the secret from what the origin sees', async () => {
    const res = await request(server.port, host, `/headers?a=b%20c&beam_secret=${secret}&z=1`);
    expect(res.status).toBe(200);
    expect(res.headers['set-cookie']).toContain(`beam_secret=${secret}; Path=/; HttpOnly; SameSite=Lax`);
    // The rest of the query reaches the app byte for byte.
    expect(seen(res.body).url).toBe('/headers?a=b%20c&z=1');
  });

  it('lets the cookie and the Beam-Secret header in, and passes on neither', async () => {
    const byCookie = await request(server.port, host, '/headers', { headers: { cookie: `theme=dark; beam_secret=${secret}; lang=en` } });
    expect(byCookie.status).toBe(200);
    expect(seen(byCookie.body).headers['cookie']).toBe('theme=dark; lang=en');
    const byHeader = await request(server.port, host, '/headers', { headers: { 'beam-secret': secret } });
    expect(byHeader.status).toBe(200);
    expect(seen(byHeader.body).headers['beam-secret']).toBeUndefined();
  });
});

describe('a private share through beam connect', () => {
  async function connectWith(l: string, extra: string[] = []): Promise<BeamProcess> {
    return new BeamProcess(['connect', l, '--server', server.url, '--json', ...extra]);
  }

  it('works with the full link, on the direct path and on the relay', async () => {
    for (const relay of ['never', 'always']) {
      const c = await connectWith(link, ['--relay', relay]);
      try {
        const port = Number(new URL((await c.waitFor('ready'))['url'] as string).port);
        const res = await request(port, `127.0.0.1:${port}`, '/inside');
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe('hello from /inside');
      } finally {
        await c.kill();
      }
    }
  });

  it('refuses a link without the secret at once, with BEAM_ERR_PRIVATE', async () => {
    const u = new URL(link);
    u.hash = `peer=${new URLSearchParams(u.hash.slice(1)).get('peer')}`;
    const c = await connectWith(u.href);
    const err = await c.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_PRIVATE');
    expect(await c.exited).toBe(1);
  });

  it('fails the handshake with a wrong secret, on both paths, with BEAM_ERR_PRIVATE and no fallback', async () => {
    const u = new URL(link);
    const fragment = new URLSearchParams(u.hash.slice(1));
    fragment.set('secret', 'not-the-secret');
    u.hash = fragment.toString();
    for (const relay of ['never', 'always']) {
      const c = await connectWith(u.href, ['--relay', relay]);
      const err = await c.waitFor('error');
      expect(err['code'], relay).toBe('BEAM_ERR_PRIVATE');
      expect(await c.exited).toBe(1);
    }
  });
});

describe('--auth (HTTP basic auth, checked by the agent)', () => {
  let authed: BeamProcess;
  let authHost: string;
  let authLink: string;
  const basic = (creds: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(creds).toString('base64')}` });

  beforeAll(async () => {
    authed = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--json', '--auth', 'alice:s3cret:with:colons']);
    const ready = await authed.waitFor('ready');
    authHost = `${new URL(ready['url'] as string).hostname}:${server.port}`;
    authLink = ready['link'] as string;
  });
  afterAll(async () => {
    await authed?.kill();
  });

  it('challenges a visitor without or with wrong credentials (401, WWW-Authenticate), and the origin never sees them', async () => {
    const before = origin.hits.get('/headers') ?? 0;
    for (const headers of [{}, basic('alice:wrong'), basic('mallory:s3cret:with:colons')]) {
      const res = await request(server.port, authHost, '/headers', { headers });
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Basic realm="beam", charset="UTF-8"');
      expect(res.headers['beam-error']).toBe('BEAM_ERR_UNAUTHORIZED');
    }
    expect(origin.hits.get('/headers') ?? 0).toBe(before);
  });

  it('lets the right credentials in and does not pass them on to the origin', async () => {
    const res = await request(server.port, authHost, '/headers', { headers: basic('alice:s3cret:with:colons') });
    expect(res.status).toBe(200);
    expect(seen(res.body).headers['authorization']).toBeUndefined();
  });

  it('holds on the peer-to-peer path too (beam connect)', async () => {
    const c = new BeamProcess(['connect', authLink, '--server', server.url, '--json']);
    try {
      const port = Number(new URL((await c.waitFor('ready'))['url'] as string).port);
      expect((await request(port, `127.0.0.1:${port}`, '/p2p')).status).toBe(401);
      expect((await request(port, `127.0.0.1:${port}`, '/p2p', { headers: basic('alice:s3cret:with:colons') })).status).toBe(200);
    } finally {
      await c.kill();
    }
  });

  it.each([
    [['tcp', '5432', '--auth', 'a:b'], /--private/],
    [['http', '3000', '--auth', 'nocolon'], /user:password/],
    [['http', '3000', '--auth', ':pass'], /user:password/],
  ])('beam %j is refused with BEAM_ERR_BAD_OPTION', async (argv, hint) => {
    const p = new BeamProcess([...argv, '--server', server.url, '--json']);
    const err = await p.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(err['message'])).toMatch(hint);
    expect(await p.exited).toBe(1);
  });
});

describe('--allow-ip / --deny-ip (checked by the agent)', () => {
  async function share(rules: string[]): Promise<{ proc: BeamProcess; host: string; link: string }> {
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--json', ...rules]);
    const ready = await proc.waitFor('ready');
    return { proc, host: `${new URL(ready['url'] as string).hostname}:${server.port}`, link: ready['link'] as string };
  }

  it.each([
    [['--deny-ip', '127.0.0.0/8'], 403],
    [['--allow-ip', '10.0.0.0/8', '192.0.2.7'], 403],
    [['--allow-ip', '127.0.0.1'], 200],
    [['--allow-ip', '127.0.0.0/8', '--deny-ip', '127.0.0.1/32'], 403],
  ])('on the gateway path, %j gives a loopback visitor %i', async (rules, status) => {
    const s = await share(rules);
    try {
      const before = origin.hits.get('/ip-check') ?? 0;
      const res = await request(server.port, s.host, '/ip-check');
      expect(res.status).toBe(status);
      if (status === 403) {
        expect(res.headers['beam-error']).toBe('BEAM_ERR_FORBIDDEN');
        expect(origin.hits.get('/ip-check') ?? 0).toBe(before);
      }
    } finally {
      await s.proc.kill();
    }
  });

  it('holds for peer-to-peer visitors on the direct path and on the relay', async () => {
    const s = await share(['--deny-ip', '0.0.0.0/0', '::/0']);
    try {
      for (const relay of ['never', 'always']) {
        const c = new BeamProcess(['connect', s.link, '--server', server.url, '--json', '--relay', relay]);
        try {
          const port = Number(new URL((await c.waitFor('ready'))['url'] as string).port);
          const res = await request(port, `127.0.0.1:${port}`, '/ip-check');
          expect(res.status, relay).toBe(403);
          expect(res.headers['beam-error']).toBe('BEAM_ERR_FORBIDDEN');
        } finally {
          await c.kill();
        }
      }
    } finally {
      await s.proc.kill();
    }
  });

  it('refuses a bad range with BEAM_ERR_BAD_OPTION', async () => {
    const p = new BeamProcess(['http', '3000', '--server', server.url, '--json', '--allow-ip', '300.1.2.3/8']);
    const err = await p.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(err['message'])).toMatch(/CIDR/);
  });
});

describe('--rate-limit (per visitor, checked by the agent)', () => {
  it('lets N requests per minute through per visitor, then answers 429 with Retry-After; each visitor has its own budget', async () => {
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--json', '--rate-limit', '5/min']);
    try {
      const ready = await proc.waitFor('ready');
      const rlHost = `${new URL(ready['url'] as string).hostname}:${server.port}`;
      const before = origin.hits.get('/limited') ?? 0;
      const statuses: number[] = [];
      let last;
      for (let i = 0; i < 7; i++) {
        last = await request(server.port, rlHost, '/limited');
        statuses.push(last.status);
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
      expect(last?.headers['beam-error']).toBe('BEAM_ERR_RATE_LIMITED');
      expect(Number(last?.headers['retry-after'])).toBeGreaterThan(0);
      expect((origin.hits.get('/limited') ?? 0) - before).toBe(5);
      // A peer-to-peer visitor is another visitor, with its own five.
      const c = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
      try {
        const port = Number(new URL((await c.waitFor('ready'))['url'] as string).port);
        const p2p: number[] = [];
        for (let i = 0; i < 6; i++) p2p.push((await request(port, `127.0.0.1:${port}`, '/limited')).status);
        expect(p2p).toEqual([200, 200, 200, 200, 200, 429]);
      } finally {
        await c.kill();
      }
    } finally {
      await proc.kill();
    }
  });

  it('refuses a malformed rate with BEAM_ERR_BAD_OPTION', async () => {
    const p = new BeamProcess(['http', '3000', '--server', server.url, '--json', '--rate-limit', 'lots']);
    const err = await p.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(err['message'])).toMatch(/100\/min/);
  });
});

describe('--max-visitors (checked by the agent, on every path)', () => {
  /** A gateway request from a chosen loopback address: each address is one visitor. */
  function from(address: string, rlHost: string, path: string): Promise<{ status: number; code: string | undefined; retryAfter: string | undefined }> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path, localAddress: address, headers: { host: rlHost }, agent: false }, (res) => {
          res.resume();
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              code: res.headers['beam-error'] as string | undefined,
              retryAfter: res.headers['retry-after'] as string | undefined,
            }),
          );
        })
        .on('error', reject);
    });
  }

  it('lets N visitors in at once: gateway clients by address, peer-to-peer visitors by session; the next gets 503 BEAM_ERR_MAX_VISITORS', async () => {
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--json', '--max-visitors', '2', '--no-inspect']);
    try {
      const ready = await proc.waitFor('ready');
      const mvHost = `${new URL(ready['url'] as string).hostname}:${server.port}`;
      expect((await from('127.0.0.1', mvHost, '/mv')).status).toBe(200);
      expect((await from('127.0.0.2', mvHost, '/mv')).status).toBe(200);
      const before = origin.hits.get('/mv') ?? 0;
      const third = await from('127.0.0.3', mvHost, '/mv');
      expect(third).toEqual({ status: 503, code: 'BEAM_ERR_MAX_VISITORS', retryAfter: '60' });
      expect(origin.hits.get('/mv')).toBe(before);
      // Those already in stay in.
      expect((await from('127.0.0.1', mvHost, '/mv')).status).toBe(200);
      // A peer-to-peer visitor would be the third: refused at once, with the code.
      const c = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
      const err = await c.waitFor('error');
      expect(err['code']).toBe('BEAM_ERR_MAX_VISITORS');
      expect(await c.exited).toBe(1);
    } finally {
      await proc.kill();
    }
  });

  it('a peer-to-peer visitor holds its place while its session lasts, and frees it when it leaves', async () => {
    const proc = new BeamProcess(['tcp', `127.0.0.1:${origin.port}`, '--server', server.url, '--json', '--max-visitors', '1']);
    try {
      const ready = await proc.waitFor('ready');
      const first = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
      await first.waitFor('ready');
      const second = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
      expect((await second.waitFor('error'))['code']).toBe('BEAM_ERR_MAX_VISITORS');
      const mark = proc.events.length;
      await first.kill();
      await proc.waitFor('session-closed', mark);
      const third = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
      try {
        expect((await third.waitFor('ready'))['url']).toMatch(/^tcp:\/\//);
      } finally {
        await third.kill();
      }
    } finally {
      await proc.kill();
    }
  });

  it('refuses --max-visitors 0 with BEAM_ERR_BAD_OPTION', async () => {
    const p = new BeamProcess(['http', '3000', '--server', server.url, '--json', '--max-visitors', '0']);
    expect((await p.waitFor('error'))['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(await p.exited).toBe(1);
  });
});

describe("a private share's secret never reaches the inspector or its HAR export, on any path", () => {
  it('after the link, the cookie, the header and a beam connect visitor that sends it too', async () => {
    const inspect = (await agent.waitFor('ready'))['inspect'] as string;
    expect(inspect).toMatch(/^http:\/\/127\.0\.0\.1:\d+/);
    // The gateway path: the link (Beam answers with Set-Cookie: beam_secret=…), the cookie, the header.
    expect((await request(server.port, host, `/inspected?beam_secret=${secret}`)).headers['set-cookie']).toEqual([expect.stringContaining(secret)]);
    expect((await request(server.port, host, '/inspected-cookie', { headers: { cookie: `theme=dark; beam_secret=${secret}` } })).status).toBe(200);
    expect((await request(server.port, host, '/inspected-header', { headers: { 'beam-secret': secret } })).status).toBe(200);
    // The direct path: a beam connect visitor proved the secret in its handshake, and sends it again anyway.
    const c = new BeamProcess(['connect', link, '--server', server.url, '--json']);
    try {
      const port = Number(new URL((await c.waitFor('ready'))['url'] as string).port);
      const res = await request(port, `127.0.0.1:${port}`, `/headers?beam_secret=${secret}`, {
        headers: { cookie: `beam_secret=${secret}; lang=en`, 'beam-secret': secret },
      });
      expect(res.status).toBe(200);
      // Nor does the origin see it.
      expect(res.body.toString()).not.toContain(secret);
      expect(seen(res.body).headers['cookie']).toBe('lang=en');
    } finally {
      await c.kill();
    }
    const get = async (p: string): Promise<string> => {
      const res = await fetch(new URL(p, inspect));
      expect(res.status).toBe(200);
      return res.text();
    };
    const list = JSON.parse(await get('/api/requests')) as { requests: Array<{ id: string; target: string }> };
    expect(list.requests.map((r) => r.target)).toEqual(expect.arrayContaining(['/inspected', '/inspected-cookie', '/inspected-header', '/headers']));
    const texts = [JSON.stringify(list), await get('/api/har')];
    for (const r of list.requests) texts.push(await get(`/api/requests/${r.id}`));
    for (const text of texts) expect(text).not.toContain(secret);
    // What Beam set is Beam's, but the app's own headers are all there.
    const detail = JSON.parse(await get(`/api/requests/${list.requests.find((r) => r.target === '/inspected')?.id}`)) as {
      responseHeaders: Array<[string, string]>;
    };
    expect(detail.responseHeaders.some(([k]) => k.toLowerCase() === 'set-cookie')).toBe(false);
    expect(detail.responseHeaders.some(([k]) => k.toLowerCase() === 'content-type')).toBe(true);
  });
});
