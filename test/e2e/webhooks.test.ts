/**
 * --verify-webhook end to end: the agent checks each request's signature
 * over its exact body, on every path, before the origin sees anything.
 * Signed by the senders' own SDKs; unsigned, tampered and oversized requests
 * never reach the origin.
 */
import { randomBytes } from 'node:crypto';
import { sign as githubSign } from '@octokit/webhooks-methods';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_WEBHOOK_BODY_BYTES } from '../../shared/constants.js';
import { request, sha256 } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
let github: AgentHandle;
let stripe: AgentHandle;
let connect: BeamProcess;
let connectPort: number;
const SECRET = 'a-webhook-secret';

async function agentWith(args: string[], env: NodeJS.ProcessEnv = {}): Promise<AgentHandle> {
  const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', server.url, '--json', '--no-inspect', ...args], env);
  const ready = await proc.waitFor('ready');
  const name = ready['name'] as string;
  return { proc, name, url: ready['url'] as string, host: `${name}.localhost:${server.port}` };
}

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  github = await agentWith(['--verify-webhook', 'github', '--verify-webhook-secret', SECRET]);
  // The secret from the environment, as a deployment would pass it.
  stripe = await agentWith(['--verify-webhook', 'stripe'], { BEAM_VERIFY_WEBHOOK_SECRET: 'whsec_beam_test' });
  const link = (await github.proc.waitFor('ready'))['link'] as string;
  connect = new BeamProcess(['connect', link, '--server', server.url, '--json']);
  connectPort = Number(new URL((await connect.waitFor('ready'))['url'] as string).port);
});
afterAll(async () => {
  await connect?.kill();
  await github?.proc.kill();
  await stripe?.proc.kill();
  await server?.proc.kill();
  await origin?.close();
});

describe('--verify-webhook github', () => {
  it.each([
    ['the gateway', () => ({ port: server.port, host: github.host })],
    ['beam connect', () => ({ port: connectPort, host: `127.0.0.1:${connectPort}` })],
  ])('through %s: a signed delivery reaches the origin byte-exact; unsigned or tampered ones never do', async (_via, target) => {
    const { port, host } = target();
    const payload = Buffer.from(JSON.stringify({ action: 'opened', pull_request: { number: 7 }, pad: randomBytes(2000).toString('hex') }));
    const signature = await githubSign(SECRET, payload.toString());
    const signed = await request(port, host, '/upload', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'pull_request', 'x-hub-signature-256': signature },
      body: payload,
    });
    expect(signed.status).toBe(200);
    expect(JSON.parse(signed.body.toString())).toEqual({ bytes: payload.byteLength, sha256: sha256(payload) });

    const before = origin.hits.get('/upload') ?? 0;
    const unsigned = await request(port, host, '/upload', { method: 'POST', body: payload });
    expect(unsigned.status).toBe(401);
    expect(unsigned.headers['beam-error']).toBe('BEAM_ERR_WEBHOOK_SIGNATURE');
    const tampered = Buffer.from(payload.toString().replace('"number":7', '"number":8'));
    const forged = await request(port, host, '/upload', { method: 'POST', headers: { 'x-hub-signature-256': signature }, body: tampered });
    expect(forged.status).toBe(401);
    expect(forged.headers['beam-error']).toBe('BEAM_ERR_WEBHOOK_SIGNATURE');
    const get = await request(port, host, '/hello');
    expect(get.status).toBe(401);
    expect(origin.hits.get('/upload') ?? 0).toBe(before);
  });

  it('a chunked delivery of over 3 MiB is read whole, checked, and sent on byte-exact', async () => {
    // @octokit signs a string (as UTF-8): a JSON-ish payload of 3 MiB.
    const payload = Buffer.from(JSON.stringify({ blob: randomBytes(1_600_000).toString('hex') }));
    const signature = await githubSign(SECRET, payload.toString());
    const { Readable } = await import('node:stream');
    const res = await request(server.port, github.host, '/upload', {
      method: 'POST',
      headers: { 'x-hub-signature-256': signature },
      body: Readable.from([payload.subarray(0, 1_000_000), payload.subarray(1_000_000)]),
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ bytes: payload.byteLength, sha256: sha256(payload) });
  });

  it(`a body over ${MAX_WEBHOOK_BODY_BYTES} bytes is 413 BEAM_ERR_BODY_TOO_LARGE, refused on its Content-Length`, async () => {
    const before = origin.hits.get('/upload') ?? 0;
    const res = await request(server.port, github.host, '/upload', {
      method: 'POST',
      headers: { 'content-length': String(MAX_WEBHOOK_BODY_BYTES + 1) },
      body: Buffer.alloc(0),
      agent: false,
    }).catch((err: Error) => ({ status: -1, headers: {} as Record<string, string>, error: err }));
    expect(res.status).toBe(413);
    expect(res.headers['beam-error']).toBe('BEAM_ERR_BODY_TOO_LARGE');
    expect(origin.hits.get('/upload') ?? 0).toBe(before);
  });
});

describe('--verify-webhook stripe', () => {
  it("a delivery signed by stripe's own helper is let through; a stale one is not", async () => {
    const sdk = new Stripe('sk_test_beam');
    const payload = JSON.stringify({ id: 'evt_1', type: 'payment_intent.succeeded' });
    const now = Math.floor(Date.now() / 1000);
    const fresh = sdk.webhooks.generateTestHeaderString({ payload, secret: 'whsec_beam_test', timestamp: now });
    const ok = await request(server.port, stripe.host, '/upload', { method: 'POST', headers: { 'stripe-signature': fresh }, body: Buffer.from(payload) });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body.toString()).sha256).toBe(sha256(Buffer.from(payload)));
    const stale = sdk.webhooks.generateTestHeaderString({ payload, secret: 'whsec_beam_test', timestamp: now - 3600 });
    const old = await request(server.port, stripe.host, '/upload', { method: 'POST', headers: { 'stripe-signature': stale }, body: Buffer.from(payload) });
    expect(old.status).toBe(401);
    expect(old.headers['beam-error']).toBe('BEAM_ERR_WEBHOOK_SIGNATURE');
  });
});
