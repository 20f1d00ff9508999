/**
 * The programmatic API, imported by package name as a user's test would:
 * serve, share and connect, each resolving to { url, close() }.
 */

import { BeamError, connect, type Server, type SessionInfo, serve, share } from 'beam-tunnel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';

let origin: Origin;
let server: Server;

beforeAll(async () => {
  origin = await startOrigin();
  server = await serve({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await server?.close();
  await origin?.close();
});

describe('import { share, connect, serve } from the package', () => {
  it('shares a local server, reachable through the gateway and through connect(); close() ends both', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const s = await share({ target: origin.port, server: server.url, name: 'api-share' });
    expect(s.name).toBe('api-share');
    expect(s.url).toBe(`http://api-share.localhost:${server.port}/`);
    expect(s.link).toMatch(/#peer=12D3KooW/);
    expect(s.inspect).toBeUndefined();
    const sessions: SessionInfo[] = [];
    s.on('session', (info) => sessions.push(info));

    const host = new URL(s.url).host;
    const viaGateway = await request(server.port, host, '/from-api');
    expect(viaGateway.status).toBe(200);
    expect(viaGateway.body.toString()).toBe('hello from /from-api');
    expect(sessions.map((x) => x.visitor)).toContain('gateway');

    const local = await connect({ link: s.link });
    expect(local.kind).toBe('http');
    expect(local.url).toBe(`http://127.0.0.1:${local.port}/`);
    const viaConnect = await request(local.port, `127.0.0.1:${local.port}`, '/from-connect');
    expect(viaConnect.body.toString()).toBe('hello from /from-connect');
    expect(viaConnect.headers['beam-path']).toMatch(/^(direct|relay)$/);

    // By name on a server (`beam connect api-share --server <url>`): no link pins the key, and the result says so.
    const byName = await connect({ link: 'api-share', server: server.url });
    expect({ verified: byName.verified, lan: byName.lan, share: byName.share }).toEqual({ verified: false, lan: false, share: 'api-share' });
    expect((await request(byName.port, `127.0.0.1:${byName.port}`, '/by-name')).body.toString()).toBe('hello from /by-name');
    await byName.close();

    await local.close();
    await s.close();
    const gone = await request(server.port, host, '/from-api');
    expect(gone.status).toBe(404);
    expect(gone.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
  });

  it("resolves once the server's gateway has its link to the share: its session is up before anyone asks, and the first request rides it", async () => {
    const s = await share({ target: origin.port, server: server.url });
    const sessions: SessionInfo[] = [];
    s.on('session', (info) => sessions.push(info));
    // The events that came before share() resolved reach listeners added at once, a turn later.
    await new Promise((resolve) => setImmediate(resolve));
    try {
      expect(sessions.map((x) => x.visitor)).toEqual(['gateway']);
      const first = await request(server.port, new URL(s.url).host, '/at-once');
      expect(first.status).toBe(200);
      // The same session carried it: no other was set up for the request.
      expect(sessions.map((x) => x.id)).toEqual([sessions[0]?.id]);
    } finally {
      await s.close();
    }
  });

  it('starts the inspector when asked', async () => {
    const s = await share({ target: origin.port, server: server.url, inspect: 0 });
    try {
      expect(s.inspect).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      await request(server.port, new URL(s.url).host, '/inspected');
      const list = await fetch(`${s.inspect}/api/requests`).then((r) => r.json() as Promise<{ requests: Array<{ target: string }> }>);
      expect(list.requests.map((r) => r.target)).toEqual(['/inspected']);
    } finally {
      await s.close();
    }
  });

  it('rejects bad options with BeamError codes, starting nothing', async () => {
    const bad = [
      share({ target: 'not-a-port', server: server.url }),
      share({ target: origin.port, server: 'ftp://example' }),
      share({ target: origin.port, server: server.url, kind: 'tcp', auth: 'a:b' }),
      share({ target: origin.port, server: server.url, rateLimit: 'lots' }),
      connect({ link: 'not a link' }),
      serve({ domain: 'bad domain!' }),
      // A JavaScript caller's typo.
      serve({ port: 0, host: '127.0.0.1', gatewayRelay: 'sometimes' as unknown as 'auto' }),
      serve({ port: 0, host: '127.0.0.1', browserFirstLoad: 'side' as unknown as 'top' }),
    ];
    for (const p of bad) {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(BeamError);
      expect((err as BeamError).code).toMatch(/^BEAM_ERR_(BAD_OPTION|BAD_REQUEST)$/);
    }
  });
});
