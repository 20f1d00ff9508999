/**
 * The inspector's store and views, in memory: its limits (exchanges kept,
 * body bytes kept), body rendering, the HAR, and replay's refusals.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Inspector } from '../peer-agent/inspect.js';
import { renderBody, toHar } from '../peer-agent/inspect-view.js';
import { OriginForwarder } from '../peer-agent/origin.js';
import { INSPECT_BODY_BYTES, INSPECT_MAX_EXCHANGES, INSPECT_SLAB_BYTES } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { close, listen } from './helpers/http.js';

const start = {
  method: 'POST',
  target: '/x',
  headers: [['content-type', 'text/plain']] as Array<[string, string]>,
  visitor: '127.0.0.1',
  path: 'gateway' as const,
};

describe('Inspector', () => {
  it(`keeps the latest INSPECT_MAX_EXCHANGES (${INSPECT_MAX_EXCHANGES}) exchanges, dropping the oldest`, () => {
    const inspector = new Inspector();
    for (let i = 0; i < INSPECT_MAX_EXCHANGES + 3; i++) inspector.begin({ ...start, target: `/${i}` }).finish();
    const list = inspector.list();
    expect(list).toHaveLength(INSPECT_MAX_EXCHANGES);
    expect(list[0]?.target).toBe('/3');
    expect(list.at(-1)?.target).toBe(`/${INSPECT_MAX_EXCHANGES + 2}`);
    expect(inspector.get(String(1))).toBeUndefined();
  });

  it(`keeps the first INSPECT_BODY_BYTES (${INSPECT_BODY_BYTES}) of a body and counts the rest`, () => {
    const inspector = new Inspector();
    const c = inspector.begin(start);
    c.requestChunk(Buffer.alloc(INSPECT_BODY_BYTES - 10, 1));
    c.requestChunk(Buffer.alloc(30, 2));
    c.response(200, 'OK', []);
    c.responseChunk(Buffer.from('ok'));
    c.finish();
    const d = inspector.get(c.id)!;
    expect(d.requestBytes).toBe(INSPECT_BODY_BYTES + 20);
    expect(d.requestBody.bytes.byteLength).toBe(INSPECT_BODY_BYTES);
    expect(d.requestBody.truncated).toBe(true);
    expect(d.requestBody.bytes.at(-1)).toBe(2);
    expect(d.responseBody).toEqual({ bytes: Buffer.from('ok'), truncated: false });
    expect(d.state).toBe('done');
  });

  it(`keeps ended exchanges' bytes in ${INSPECT_SLAB_BYTES}-byte slabs it writes again once their exchanges left: what it shows stays byte for byte`, () => {
    const inspector = new Inspector({ max: 20 });
    const hash = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    const body = (i: number, size: number): Buffer => Buffer.from(new Uint8Array(size).map((_, j) => (i * 31 + j * 7) % 251));
    // 400 exchanges of 60 + 64 KiB kept: about 48 slabs' worth if none were written again.
    for (let i = 0; i < 400; i++) {
      const c = inspector.begin({ ...start, target: `/${i}`, headers: [['x-n', String(i)]] });
      c.requestChunk(body(i, 60 * 1024));
      c.response(201, `Made ${i}`, [['x-r', `r${i}`]]);
      c.responseChunk(body(i + 1, 40 * 1024));
      c.responseChunk(body(i + 2, 40 * 1024));
      if (i % 7 === 0) c.fail('BEAM_ERR_STREAM_RESET');
      else c.finish();
    }
    const kept = inspector.details();
    expect(kept.map((x) => x.target)).toEqual(Array.from({ length: 20 }, (_, k) => `/${380 + k}`));
    for (const x of kept) {
      const i = Number(x.target.slice(1));
      expect(x.requestHeaders).toEqual([['x-n', String(i)]]);
      expect(x.responseHeaders).toEqual([['x-r', `r${i}`]]);
      expect(x.statusText).toBe(`Made ${i}`);
      expect(hash(x.requestBody.bytes)).toBe(hash(body(i, 60 * 1024)));
      expect(hash(x.responseBody.bytes)).toBe(hash(Buffer.concat([body(i + 1, 40 * 1024), body(i + 2, 40 * 1024)]).subarray(0, INSPECT_BODY_BYTES)));
      expect(x.responseBody.truncated).toBe(true);
      expect(x.responseBytes).toBe(80 * 1024);
      expect(x.state).toBe(i % 7 === 0 ? 'failed' : 'done');
    }
    // Headers bigger than a slab get room of their own.
    const big = inspector.begin({ ...start, headers: [['x-big', 'b'.repeat(INSPECT_SLAB_BYTES + 10)]] });
    big.finish();
    expect(inspector.get(big.id)?.requestHeaders[0]?.[1]).toHaveLength(INSPECT_SLAB_BYTES + 10);
    inspector.clear();
    expect(inspector.list()).toEqual([]);
  });

  it('emits each change, and nothing once an exchange ended', () => {
    const inspector = new Inspector();
    const seen: string[] = [];
    inspector.on('exchange', (s) => seen.push(`${s.id}:${s.state}:${s.status ?? '-'}`));
    const c = inspector.begin(start);
    c.response(502, undefined, []);
    c.fail('BEAM_ERR_ORIGIN_UNREACHABLE', 502);
    c.finish();
    c.responseChunk(Buffer.from('late'));
    expect(seen).toEqual(['1:pending:-', '1:pending:502', '1:failed:502']);
    expect(inspector.get('1')?.responseBytes).toBe(0);
  });
});

describe('renderBody', () => {
  const body = (bytes: Buffer, truncated = false) => ({ bytes, truncated, size: bytes.byteLength });
  it('pretty-prints JSON, keeps text, dumps binary as hex', () => {
    expect(renderBody(body(Buffer.from('{"a":[1,2]}')), [['Content-Type', 'application/json; charset=utf-8']])).toMatchObject({
      kind: 'json',
      text: '{\n  "a": [\n    1,\n    2\n  ]\n}',
    });
    expect(renderBody(body(Buffer.from('{"a":')), [['content-type', 'application/json']])).toMatchObject({ kind: 'text', text: '{"a":' });
    expect(renderBody(body(Buffer.from('héllo')), [['content-type', 'text/plain']])).toMatchObject({ kind: 'text', text: 'héllo' });
    expect(renderBody(body(Buffer.from([0x89, 0x50, 0x4e, 0x47])), [['content-type', 'image/png']])).toMatchObject({
      kind: 'binary',
      text: `00000000  ${'89 50 4e 47'.padEnd(47)}  .PNG`,
    });
    // Compressed bytes are binary whatever the type says.
    expect(
      renderBody(body(Buffer.from('abc')), [
        ['content-type', 'text/plain'],
        ['content-encoding', 'gzip'],
      ]).kind,
    ).toBe('binary');
    expect(renderBody(body(Buffer.alloc(0)), []).kind).toBe('empty');
  });

  it('shows text cut inside a multi-byte character as text', () => {
    const cut = Buffer.from('ééé').subarray(0, 5);
    expect(renderBody(body(cut, true), [['content-type', 'text/plain']])).toMatchObject({ kind: 'text', text: 'éé', truncated: true });
  });
});

describe('toHar', () => {
  it('writes HAR 1.2 entries with URLs on the origin, query strings, text and base64 bodies', () => {
    const inspector = new Inspector();
    const c = inspector.begin({ ...start, target: '/a?b=1&c=2' });
    c.requestChunk(Buffer.from('hello'));
    c.response(201, 'Created', [
      ['content-type', 'application/octet-stream'],
      ['location', '/a/1'],
    ]);
    c.responseChunk(Buffer.from([0xff, 0x00]));
    c.finish();
    const har = JSON.parse(JSON.stringify(toHar(inspector.details(), 'localhost:3000', '1.2.3'))) as {
      // biome-ignore lint/suspicious/noExplicitAny: a HAR entry's shape is what this test checks, field by field.
      log: { version: string; creator: { version: string }; entries: Array<Record<string, any>> };
    };
    expect(har.log.version).toBe('1.2');
    expect(har.log.creator.version).toBe('1.2.3');
    const e = har.log.entries[0]!;
    expect(e['request'].url).toBe('http://localhost:3000/a?b=1&c=2');
    expect(e['request'].queryString).toEqual([
      { name: 'b', value: '1' },
      { name: 'c', value: '2' },
    ]);
    expect(e['request'].postData).toEqual({ mimeType: 'text/plain', text: 'hello' });
    expect(e['response'].content).toEqual({ size: 2, mimeType: 'application/octet-stream', text: '/wA=', encoding: 'base64' });
    expect(e['response'].redirectURL).toBe('/a/1');
    expect(e['_beamPath']).toBe('gateway');
  });
});

describe('OriginForwarder.replay', () => {
  it('refuses an exchange it no longer holds, and a truncated body unless edited; an edited one reaches the origin', async () => {
    const bodies: string[] = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(`${req.method} ${req.url} ${req.headers['content-length']} ${Buffer.concat(chunks).toString()}`);
        res.end('done');
      });
    });
    const port = await listen(server);
    const inspector = new Inspector();
    const forwarder = new OriginForwarder(
      { logger: pino({ level: 'silent' }), events: { onUnreachable() {} }, inspector },
      { host: '127.0.0.1', port },
      { hostHeader: 'rewrite', timeoutMs: 5_000 },
    );
    try {
      await expect(forwarder.replay('42')).rejects.toMatchObject({ code: 'BEAM_ERR_EXCHANGE_GONE' });
      const c = inspector.begin(start);
      c.requestChunk(Buffer.alloc(INSPECT_BODY_BYTES + 1, 97));
      c.finish();
      const err = await forwarder.replay(c.id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BeamError);
      expect((err as BeamError).code).toBe('BEAM_ERR_REPLAY_TRUNCATED');
      expect(bodies).toEqual([]);
      const id = await forwarder.replay(c.id, { body: Buffer.from('short'), method: 'PUT' });
      expect(bodies).toEqual(['PUT /x 5 short']);
      expect(inspector.get(id)).toMatchObject({ path: 'replay', replayOf: c.id, method: 'PUT', status: 200 });
    } finally {
      forwarder.close();
      await close(server);
    }
  });
});
