/**
 * Which requests the agent sends on undici's pool and which on Node's client
 * (peer-agent/origin-pool.ts), and the warm-up that compiles undici's parser
 * before the first visitor. What each path does end to end is in the e2e
 * tests (gateway, smuggling, hardening, http2, webhooks).
 */
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Framing } from '../peer-agent/framing.js';
import { type Forwarded, OriginIo } from '../peer-agent/origin-io.js';
import { poolCarries, warmPool } from '../peer-agent/origin-pool.js';

const opened: OriginIo[] = [];
afterEach(() => {
  for (const io of opened.splice(0)) io.close();
});

function originIo(host: string, scheme: 'http' | 'https' = 'http'): OriginIo {
  const io = new OriginIo({ host, port: 8443, scheme }, { timeoutMs: 5_000, log: pino({ level: 'silent' }), onUnreachable: () => {} });
  opened.push(io);
  return io;
}

function request(headers: Array<[string, string]>, extra: Partial<Forwarded> = {}): Forwarded {
  const framing: Framing = { kind: 'none' };
  return {
    method: 'GET',
    target: '/',
    headers,
    upgrade: false,
    body: false,
    framed: false,
    trailers: false,
    framing,
    setCookie: undefined,
    browser: false,
    requestId: 'test-request-1',
    path: 'gateway',
    capture: undefined,
    ...extra,
  };
}

describe("the agent's origin clients", () => {
  it('ordinary requests go on the pool: no body, a body of known length, a chunked body without records, a body read already', () => {
    const io = originIo('127.0.0.1');
    const host: [string, string] = ['Host', '127.0.0.1:8443'];
    expect(poolCarries(request([host]), io)).toBe(true);
    expect(poolCarries(request([host, ['Content-Length', '5']], { method: 'POST', body: true, framing: { kind: 'length', length: 5 } }), io)).toBe(true);
    expect(poolCarries(request([host], { method: 'POST', body: true, framing: { kind: 'chunked' } }), io)).toBe(true);
    expect(poolCarries(request([host], { method: 'POST', body: true, framed: true, preread: Buffer.from('read') }), io)).toBe(true);
  });

  it("what undici cannot send stays on Node's client: upgrades, a body in records (trailers), Expect", () => {
    const io = originIo('127.0.0.1');
    const host: [string, string] = ['Host', '127.0.0.1:8443'];
    expect(poolCarries(request([host, ['Upgrade', 'websocket']], { upgrade: true }), io)).toBe(false);
    expect(poolCarries(request([host], { method: 'POST', body: true, framed: true, framing: { kind: 'chunked' } }), io)).toBe(false);
    expect(poolCarries(request([host, ['expect', '100-continue']], { method: 'PUT', body: true, framing: { kind: 'length', length: 3 } }), io)).toBe(false);
  });

  it('an https origin: by name on the pool (undici is told the name); by address only when the Host is that address', () => {
    expect(poolCarries(request([['Host', 'share.example:8443']]), originIo('dev.internal', 'https'))).toBe(true);
    const byAddress = originIo('127.0.0.1', 'https');
    expect(poolCarries(request([['Host', '127.0.0.1:8443']]), byAddress)).toBe(true);
    // --host-header preserve: undici would check the origin's certificate against the visitor's Host.
    expect(poolCarries(request([['Host', 'calm-fox.localhost:7070']]), byAddress)).toBe(false);
    const v6 = originIo('::1', 'https');
    expect(poolCarries(request([['Host', '[::1]:8443']]), v6)).toBe(true);
    expect(poolCarries(request([['Host', 'calm-fox.localhost']]), v6)).toBe(false);
  });

  it('the warm-up finishes, once a process, with no origin to reach', async () => {
    const first = warmPool();
    expect(warmPool()).toBe(first);
    await expect(first).resolves.toBeUndefined();
  });
});
