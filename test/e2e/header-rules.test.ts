/**
 * Header rules, applied by the agent on every path: what the origin gets and
 * what visitors get back, through the gateway and through `beam connect`;
 * rules that would touch what Beam decides are refused at start.
 */
import { isIP } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, BeamProcess, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
let agent: AgentHandle;
let connect: BeamProcess;
let connectPort: number;

const RULES = [
  '--request-header-add',
  'X-Env: staging',
  '--request-header-add',
  'X-Seen-As: {client_ip} asked for {path}',
  '--request-header-remove',
  'User-Agent',
  '--request-header-remove',
  'x-env',
  '--response-header-add',
  'X-Served-By: beam',
  '--response-header-remove',
  'Content-Type',
];

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  agent = await startAgent(`127.0.0.1:${origin.port}`, server, ['--no-inspect', ...RULES]);
  const link = (await agent.proc.waitFor('ready'))['link'] as string;
  connect = new BeamProcess(['connect', link, '--server', server.url, '--json']);
  connectPort = Number(new URL((await connect.waitFor('ready'))['url'] as string).port);
});
afterAll(async () => {
  await connect?.kill();
  await agent?.proc.kill();
  await server?.proc.kill();
  await origin?.close();
});

describe('header rules', () => {
  it.each([
    ['the gateway', () => ({ port: server.port, host: agent.host })],
    ['beam connect', () => ({ port: connectPort, host: `127.0.0.1:${connectPort}` })],
  ])('through %s: removals first, then additions, with {client_ip} and {path}; responses too', async (_via, target) => {
    const { port, host } = target();
    const res = await request(port, host, '/headers?q=secret', { headers: { 'user-agent': 'curl/8', 'x-env': 'from-the-visitor' } });
    expect(res.status).toBe(200);
    const seen = (JSON.parse(res.body.toString()) as { headers: Record<string, string> }).headers;
    // The visitor's X-Env went (a removal), and the rule's one came (an addition): remove plus add sets a header.
    expect(seen['x-env']).toBe('staging');
    expect(seen['user-agent']).toBeUndefined();
    // The visitor's address as the agent knows it: the gateway's client, or the peer's own address on a direct path.
    const [ip, rest] = (seen['x-seen-as'] ?? '').split(/ (.*)/s);
    expect(isIP(ip ?? '')).toBeGreaterThan(0);
    if (port === server.port) expect(ip).toBe('127.0.0.1');
    expect(rest).toBe('asked for /headers');
    expect(res.headers['x-served-by']).toBe('beam');
    expect(res.headers['content-type']).toBeUndefined();
    // What Beam sets itself still comes through.
    expect(res.headers['beam-path']).toBeDefined();
  });

  it('rules on what Beam decides, or that are not headers, are refused at start with BEAM_ERR_BAD_OPTION', async () => {
    for (const rule of [
      ['--request-header-add', 'Host: elsewhere'],
      ['--request-header-add', 'Beam-Path: spoofed'],
      ['--request-header-add', 'Transfer-Encoding: chunked'],
      ['--request-header-add', 'no colon here'],
      ['--request-header-add', 'Bad Name: x'],
      ['--response-header-remove', 'Content-Length'],
      ['--response-header-add', 'X-Request-Id: mine'],
    ]) {
      const p = new BeamProcess(['http', String(origin.port), '--server', server.url, '--json', ...rule]);
      const error = await p.waitFor('error');
      expect(error['code'], rule.join(' ')).toBe('BEAM_ERR_BAD_OPTION');
      expect(await p.exited).toBe(1);
    }
  });
});
