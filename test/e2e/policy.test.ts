/**
 * A share's policy from beam.yml, end to end: `beam start` runs it, and the
 * agent applies it on every path (the gateway and beam connect alike).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
let start: BeamProcess;
let connect: BeamProcess;
let connectPort: number;
let host: string;
const SECRET = 'policy-webhook-secret';

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-policy-'));
  const file = path.join(dir, 'beam.yml');
  writeFileSync(
    file,
    `server: ${server.url}
inspect: false
shares:
  web:
    http: 127.0.0.1:${origin.port}
    policy:
      - path: /old
        redirect: { to: /hello, status: 301 }
      - name: no internals
        path: /internal
        deny: 404
      - path: /headers
        auth: alice:s3cret
      - path: /upload
        verify-webhook: { provider: github, secret: ${SECRET} }
      - request-header-add: ["X-Policy: applied"]
        response-header-add: ["X-Served-By: policy"]
`,
  );
  start = new BeamProcess(['start', '--config', file, '--json']);
  const ready = await start.waitFor((e) => e.event === 'ready' && e['share'] === 'web');
  host = new URL(ready['url'] as string).host;
  connect = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
  connectPort = Number(new URL((await connect.waitFor('ready'))['url'] as string).port);
});
afterAll(async () => {
  await connect?.kill();
  await start?.kill();
  await server?.proc.kill();
  await origin?.close();
});

describe('a policy in beam.yml', () => {
  it.each([
    ['the gateway', () => ({ port: server.port, h: host })],
    ['beam connect', () => ({ port: connectPort, h: `127.0.0.1:${connectPort}` })],
  ])('through %s: redirect, deny (however the path is spelled), auth on one path, headers everywhere else', async (_via, target) => {
    const { port, h } = target();
    const before = origin.hits.get('/internal/x') ?? 0;
    const moved = await request(port, h, '/old/page');
    expect(moved.status).toBe(301);
    expect(moved.headers['location']).toBe('/hello');
    expect(moved.headers['beam-error']).toBeUndefined();
    for (const spelled of ['/internal/x', '/%69nternal/x', '/a/../internal/x', '//internal/x']) {
      const denied = await request(port, h, spelled);
      expect(denied.status, spelled).toBe(404);
      expect(denied.headers['beam-error']).toBe('BEAM_ERR_POLICY_DENIED');
    }
    expect(origin.hits.get('/internal/x') ?? 0).toBe(before);
    expect((await request(port, h, '/headers')).status).toBe(401);
    const authed = await request(port, h, '/headers', { headers: { authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` } });
    expect(authed.status).toBe(200);
    const seen = (JSON.parse(authed.body.toString()) as { headers: Record<string, string> }).headers;
    expect(seen['x-policy']).toBe('applied');
    expect(seen['authorization']).toBeUndefined();
    const page = await request(port, h, '/hello');
    expect(page.body.toString()).toBe('hello from /hello');
    expect(page.headers['x-served-by']).toBe('policy');
    // A webhook path: signed deliveries only; the rest of the share takes no signature.
    const payload = Buffer.from(JSON.stringify({ zen: 'Keep it logically awesome.' }));
    const signed = await request(port, h, '/upload', {
      method: 'POST',
      headers: { 'x-hub-signature-256': await githubSign(SECRET, payload.toString()) },
      body: payload,
    });
    expect(signed.status).toBe(200);
    expect(JSON.parse(signed.body.toString())).toMatchObject({ bytes: payload.byteLength });
    const unsigned = await request(port, h, '/upload', { method: 'POST', body: payload });
    expect(unsigned.status).toBe(401);
    expect(unsigned.headers['beam-error']).toBe('BEAM_ERR_WEBHOOK_SIGNATURE');
  });
});
