/**
 * HTTP/2 end to end: the gateway speaks h2c (prior knowledge) beside
 * HTTP/1.1 on a plain port and h2 by ALPN on TLS; curl and Node's http2
 * client against real `beam serve` and `beam http` processes; trailers both
 * ways; HTTP/2's own header rules; the attacks HTTP/2 brought (rapid reset,
 * CONTINUATION and SETTINGS floods, oversized header lists); and https
 * origins, refused unless trusted.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2_MAX_CONCURRENT_STREAMS } from '../../shared/constants.js';
import { ErrorCode, Flag, FrameType, frame, headerBlock, RawH2, rstStream } from '../helpers/h2-frames.js';
import { patternStream, sha256 } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, BeamProcess, type ServerHandle, startAgent, startServer, tlsServe } from '../helpers/procs.js';
import { makeCertificates, makeSelfSigned, type TestCertificates } from '../helpers/tls.js';

let origin: Origin;
let server: ServerHandle;
let agent: AgentHandle;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  agent = await startAgent(`127.0.0.1:${origin.port}`, server, ['--no-inspect']);
});
afterAll(async () => {
  await agent?.proc.kill();
  await server?.proc.kill();
  await origin?.close();
});

function curl(args: string[]): Promise<{ stdout: string; code: number }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '60', ...args], { encoding: 'latin1', maxBuffer: 256 * 1024 * 1024 }, (err, stdout) =>
      resolve({ stdout, code: err ? Number((err as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0 }),
    );
  });
}

async function expectedHash(size: number, seed: number): Promise<string> {
  const { stream, hash } = patternStream(size, seed);
  stream.resume();
  return hash;
}

interface H2Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
}

/** One request on an HTTP/2 session; a body and trailers to send, optionally. */
function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  options: { body?: Buffer; trailers?: http2.OutgoingHttpHeaders } = {},
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const sendsBody = options.body !== undefined;
    const req = session.request(headers, { endStream: !sendsBody, waitForTrailers: options.trailers !== undefined });
    if (options.trailers) req.on('wantTrailers', () => req.sendTrailers(options.trailers as http2.OutgoingHttpHeaders));
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      responseHeaders = h;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, trailers, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    if (sendsBody) req.end(options.body);
  });
}

describe('h2c with prior knowledge, beside HTTP/1.1 on the same port', () => {
  it('curl --http2-prior-knowledge downloads 1 MiB over HTTP/2, sha256-equal', async () => {
    const file = path.join(tmpdir(), `beam-h2-${process.pid}.bin`);
    const out = await curl(['--http2-prior-knowledge', '-o', file, '-w', '%{http_code} %{http_version}', `http://${agent.host}/download?size=1048579&seed=5`]);
    expect(out.stdout).toBe('200 2');
    const { readFile } = await import('node:fs/promises');
    expect(sha256(await readFile(file))).toBe(await expectedHash(1_048_579, 5));
  });

  it('curl --http2-prior-knowledge uploads 3 MiB, sha256-equal at the origin', async () => {
    const { stream, hash } = patternStream(3 * 1024 * 1024, 9);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const file = path.join(tmpdir(), `beam-h2-up-${process.pid}.bin`);
    writeFileSync(file, Buffer.concat(chunks));
    const out = await curl(['--http2-prior-knowledge', '--data-binary', `@${file}`, `http://${agent.host}/upload`]);
    expect(JSON.parse(out.stdout)).toEqual({ bytes: 3 * 1024 * 1024, sha256: await hash });
  });

  it('curl --http2 on http:// (Upgrade: h2c) is served over HTTP/1.1, and plain HTTP/1.1 still works', async () => {
    const upgrade = await curl(['--http2', '-w', '\n%{http_code} %{http_version}', `http://${agent.host}/hello`]);
    expect(upgrade.stdout).toBe('hello from /hello\n200 1.1');
    const plain = await curl(['--http1.1', '-w', '\n%{http_code} %{http_version}', `http://${agent.host}/hello`]);
    expect(plain.stdout).toBe('hello from /hello\n200 1.1');
  });

  it(`Node's http2 client: 300 concurrent streams on one connection, each body whole; at most ${H2_MAX_CONCURRENT_STREAMS} at once`, async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
      expect(session.remoteSettings.maxConcurrentStreams).toBe(H2_MAX_CONCURRENT_STREAMS);
      const replies = await Promise.all(
        Array.from({ length: 300 }, (_, i) => h2request(session, { ':path': `/download?size=${20_000 + i}&seed=${i + 1}`, ':authority': agent.host })),
      );
      for (const [i, r] of replies.entries()) {
        expect(r.status).toBe(200);
        expect(r.headers['beam-path']).toMatch(/^gateway; via=/);
        expect(sha256(r.body)).toBe(await expectedHash(20_000 + i, i + 1));
      }
    } finally {
      session.close();
    }
  });

  it("flow control follows the client's window: a client that stops reading stops the origin, with little in between; reading again resumes it", async () => {
    // An origin that sends a gigabyte as fast as it may, and says how much it got out and since when it has been held back.
    let sent = 0;
    let blockedSince: number | undefined;
    const chunk = Buffer.alloc(64 * 1024, 7);
    const endless = http.createServer((_req, res) => {
      const write = (): void => {
        blockedSince = undefined;
        while (sent < 1024 ** 3) {
          sent += chunk.byteLength;
          if (!res.write(chunk)) {
            blockedSince = performance.now();
            res.once('drain', write);
            return;
          }
        }
        res.end();
      };
      write();
    });
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve));
    const share = await startAgent(`127.0.0.1:${(endless.address() as AddressInfo).port}`, server, ['--no-inspect']);
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const req = session.request({ ':path': '/', ':authority': share.host });
      req.pause();
      await new Promise((resolve) => req.once('response', resolve));
      // Held back, and for a whole second: what the client's window, the gateway, the mux and the sockets hold is all that left the origin.
      await expect.poll(() => blockedSince !== undefined && performance.now() - blockedSince > 1_000, { timeout: 20_000, interval: 100 }).toBe(true);
      expect(sent).toBeLessThan(16 * 1024 * 1024);
      let got = 0;
      let corrupt = false;
      const target = sent + 32 * 1024 * 1024;
      req.on('data', (c: Buffer) => {
        got += c.byteLength;
        if (c.some((b) => b !== 7)) corrupt = true;
      });
      req.resume();
      await expect.poll(() => got >= target, { timeout: 20_000, interval: 50 }).toBe(true);
      expect(corrupt).toBe(false);
      req.close(http2.constants.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
      await share.proc.kill();
      endless.closeAllConnections();
      endless.close();
    }
  });

  it("trailers both ways: the client's reach the origin, the origin's reach the client", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const body = Buffer.from('a body with trailers after it');
      const r = await h2request(
        session,
        { ':method': 'POST', ':path': '/trailers', ':authority': agent.host, te: 'trailers' },
        { body, trailers: { 'x-client-sum': 'c0ffee' } },
      );
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe(`got ${body.byteLength} bytes\n`);
      expect(r.trailers?.['x-body-sha256']).toBe(sha256(body));
      expect(JSON.parse(String(r.trailers?.['x-request-trailers']))).toEqual({ 'x-client-sum': 'c0ffee' });
    } finally {
      session.close();
    }
  });

  it('an HTTP/1.1 client that sends TE: trailers gets the chunked trailers too', async () => {
    const out = await curl(['--raw', '-H', 'TE: trailers', `http://${agent.host}/trailers`]);
    expect(out.stdout).toContain(`x-body-sha256: ${createHash('sha256').digest('hex')}`);
  });

  it(':authority routes like Host; a Host that disagrees with it is 400, CONNECT is 405, and the connection goes on', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const mismatch = await h2request(session, { ':path': '/hello', ':authority': agent.host, host: 'elsewhere.localhost' });
      expect(mismatch.status).toBe(400);
      expect(mismatch.headers['beam-error']).toBe('BEAM_ERR_BAD_REQUEST');
      const unknown = await h2request(session, { ':path': '/hello', ':authority': `no-such-share.localhost:${server.port}` });
      expect(unknown.status).toBe(404);
      expect(unknown.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
      const ok = await h2request(session, { ':path': '/hello', ':authority': agent.host });
      expect(ok.body.toString()).toBe('hello from /hello');
    } finally {
      session.close();
    }
    const raw = await RawH2.open(server.port);
    try {
      raw.send(
        frame(
          FrameType.HEADERS,
          Flag.END_HEADERS | Flag.END_STREAM,
          1,
          headerBlock([
            [':method', 'CONNECT'],
            [':authority', agent.host],
          ]),
        ),
      );
      expect(await raw.status(1)).toBe(405);
    } finally {
      raw.close();
    }
  });

  it('connection-specific headers and malformed pseudo-headers reset the stream; the connection keeps serving', async () => {
    const raw = await RawH2.open(server.port);
    try {
      raw.send(raw.get(1, agent.host, '/hello', [['connection', 'keep-alive']]));
      raw.send(raw.get(3, agent.host, '/hello', [['transfer-encoding', 'chunked']]));
      raw.send(raw.get(5, agent.host, '/hello', [['te', 'gzip']]));
      raw.send(
        frame(
          FrameType.HEADERS,
          Flag.END_HEADERS | Flag.END_STREAM,
          7,
          headerBlock([
            [':method', 'GET'],
            [':scheme', 'http'],
            [':authority', agent.host],
          ]),
        ),
      );
      raw.send(raw.get(9, agent.host, '/hello', [[':bogus', 'x']]));
      raw.send(raw.get(11, agent.host, '/hello', [['Upper-Case', 'x']]));
      for (const id of [1, 3, 5, 7, 9, 11]) expect(await raw.status(id)).toBe('reset');
      raw.send(raw.get(13, agent.host, '/hello'));
      expect(await raw.status(13)).toBe(200);
      expect(origin.hits.get('/hello')).toBeGreaterThan(0);
    } finally {
      raw.close();
    }
  });

  it('too many header lines are 431; a header list past the size limit is refused; others are still served', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const many: http2.OutgoingHttpHeaders = { ':path': '/hello', ':authority': agent.host };
      for (let i = 0; i < 200; i++) many[`x-h${i}`] = 'v';
      const tooMany = await h2request(session, many);
      expect(tooMany.status).toBe(431);
      expect(tooMany.headers['beam-error']).toBe('BEAM_ERR_HEAD_TOO_LARGE');
    } finally {
      session.close();
    }
    const raw = await RawH2.open(server.port);
    try {
      // 40 KB of one header, in a HEADERS frame and CONTINUATION frames of at most 16 KiB (the default frame size).
      const block = headerBlock([
        [':method', 'GET'],
        [':scheme', 'http'],
        [':authority', agent.host],
        [':path', '/hello'],
        ['x-big', 'a'.repeat(40_000)],
      ]);
      const parts = [block.subarray(0, 16_000), block.subarray(16_000, 32_000), block.subarray(32_000)];
      raw.send(frame(FrameType.HEADERS, Flag.END_STREAM, 1, parts[0]));
      raw.send(frame(FrameType.CONTINUATION, 0, 1, parts[1]));
      raw.send(frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, parts[2]));
      // Refused: the stream reset, or the connection closed with an error; never a request to the origin.
      const refused = await Promise.race([raw.status(1), raw.closed.then(() => 'closed' as const)]);
      expect(['reset', 'closed', 431]).toContain(refused);
    } finally {
      raw.close();
    }
    const session2 = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      expect((await h2request(session2, { ':path': '/hello', ':authority': agent.host })).status).toBe(200);
    } finally {
      session2.close();
    }
  });
});

describe('HTTP/2 attacks: the attacker is cut off, everyone else is served', () => {
  async function stillServes(): Promise<void> {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const r = await h2request(session, { ':path': '/hello', ':authority': agent.host });
      expect(`${r.status} ${r.body.toString()}`).toBe('200 hello from /hello');
    } finally {
      session.close();
    }
  }

  it('rapid reset (CVE-2023-44487): streams opened and cancelled at once end in GOAWAY ENHANCE_YOUR_CALM', async () => {
    const before = origin.hits.get('/hang') ?? 0;
    const raw = await RawH2.open(server.port);
    const burst: Buffer[] = [];
    for (let i = 0; i < 2_000; i++) {
      const id = 1 + 2 * i;
      burst.push(raw.get(id, agent.host, '/hang'), rstStream(id, ErrorCode.CANCEL));
    }
    raw.send(Buffer.concat(burst));
    await raw.closed;
    expect(raw.goaway).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    // The agent did not do the work of thousands of requests.
    expect((origin.hits.get('/hang') ?? 0) - before).toBeLessThan(1_000);
    await stillServes();
  });

  it('a CONTINUATION flood (one header block that never ends) closes the connection', async () => {
    const raw = await RawH2.open(server.port);
    const block = headerBlock([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':authority', agent.host],
      [':path', '/hello'],
    ]);
    raw.send(frame(FrameType.HEADERS, 0, 1, block));
    const continuation = frame(FrameType.CONTINUATION, 0, 1, headerBlock([['x-flood', 'y'.repeat(100)]]));
    for (let i = 0; i < 10_000 && raw.send(continuation); i++);
    await raw.closed;
    expect(raw.goaway === undefined || raw.goaway !== ErrorCode.NO_ERROR).toBe(true);
    await stillServes();
  });

  it('a SETTINGS flood ends in GOAWAY ENHANCE_YOUR_CALM', async () => {
    const raw = await RawH2.open(server.port);
    const settings = frame(FrameType.SETTINGS, 0, 0);
    raw.send(Buffer.concat(Array.from({ length: 1_000 }, () => settings)));
    await raw.closed;
    expect(raw.goaway).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    await stillServes();
  });
});

describe('h2 by ALPN on TLS (beam serve --tls-cert)', () => {
  let certs: TestCertificates;
  let tlsServer: BeamProcess;
  let port: number;
  let tlsAgent: BeamProcess;
  let host: string;

  beforeAll(async () => {
    certs = makeCertificates('beam.test');
    tlsServer = tlsServe('beam.test', certs);
    port = (await tlsServer.waitFor('ready'))['port'] as number;
    tlsAgent = new BeamProcess(['http', String(origin.port), '--server', `https://127.0.0.1:${port}`, '--json', '--no-inspect'], {
      NODE_EXTRA_CA_CERTS: certs.caFile,
    });
    host = new URL((await tlsAgent.waitFor('ready'))['url'] as string).hostname;
  });
  afterAll(async () => {
    await tlsAgent?.kill();
    await tlsServer?.kill();
  });

  it('curl --http2 negotiates h2; --http1.1 gets HTTP/1.1 on the same port', async () => {
    const common = ['--cacert', certs.caFile, '--resolve', `${host}:${port}:127.0.0.1`, '-w', '\n%{http_code} %{http_version}'];
    expect((await curl([...common, '--http2', `https://${host}:${port}/hello`])).stdout).toBe('hello from /hello\n200 2');
    expect((await curl([...common, '--http1.1', `https://${host}:${port}/hello`])).stdout).toBe('hello from /hello\n200 1.1');
  });
});

describe('https origins', () => {
  let certs: TestCertificates;
  let httpsOrigin: https.Server;
  let h2Origin: http2.Http2SecureServer;
  /** A development server's certificate: self-signed, for 127.0.0.1. */
  let selfSigned: https.Server;

  beforeAll(async () => {
    certs = makeCertificates('origin.test');
    const tls = { cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile) };
    httpsOrigin = https.createServer(tls, (req, res) => {
      req.resume();
      res.end(`secure ${req.url} over ${req.httpVersion}`);
    });
    h2Origin = http2.createSecureServer({ ...tls, allowHTTP1: false }, (req, res) => {
      req.resume();
      res.end(`h2 ${req.url} over ${req.httpVersion}`);
    });
    const dev = makeSelfSigned();
    selfSigned = https.createServer({ cert: readFileSync(dev.certFile), key: readFileSync(dev.keyFile) }, (req, res) => {
      req.resume();
      res.end(`self-signed ${req.url}`);
    });
    await new Promise<void>((resolve) => selfSigned.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => httpsOrigin.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => h2Origin.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => {
    httpsOrigin?.close();
    h2Origin?.close();
    selfSigned?.close();
  });

  async function through(target: string, extra: string[]): Promise<{ status: number; body: string; code: string | undefined }> {
    const a = await startAgent(target, server, ['--no-inspect', ...extra]);
    try {
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      try {
        const r = await h2request(session, { ':path': '/page', ':authority': a.host });
        return { status: r.status, body: r.body.toString(), code: r.headers['beam-error'] as string | undefined };
      } finally {
        session.close();
      }
    } finally {
      await a.proc.kill();
    }
  }

  it('an origin whose certificate the system does not trust is refused: 502 BEAM_ERR_ORIGIN_TLS, saying what to do', async () => {
    const port = (httpsOrigin.address() as AddressInfo).port;
    const r = await through(`https://127.0.0.1:${port}`, []);
    expect(r.status).toBe(502);
    expect(r.code).toBe('BEAM_ERR_ORIGIN_TLS');
    expect(r.body).toContain('--origin-ca');
  });

  it('--origin-ca <file> trusts its authority', async () => {
    const port = (httpsOrigin.address() as AddressInfo).port;
    expect(await through(`https://127.0.0.1:${port}`, ['--origin-ca', certs.caFile])).toEqual({ status: 200, body: 'secure /page over 1.1', code: undefined });
  });

  it("--host-header preserve: the origin's certificate is checked against the origin's name, not the visitor's Host", async () => {
    const port = (httpsOrigin.address() as AddressInfo).port;
    expect(await through(`https://127.0.0.1:${port}`, ['--origin-ca', certs.caFile, '--host-header', 'preserve'])).toEqual({
      status: 200,
      body: 'secure /page over 1.1',
      code: undefined,
    });
  });

  it('a self-signed development server: refused by default, served with --origin-insecure', async () => {
    const port = (selfSigned.address() as AddressInfo).port;
    const refused = await through(`https://127.0.0.1:${port}`, []);
    expect(refused.status).toBe(502);
    expect(refused.code).toBe('BEAM_ERR_ORIGIN_TLS');
    expect(refused.body).toContain('--origin-insecure');
    expect(await through(`https://127.0.0.1:${port}`, ['--origin-insecure'])).toEqual({ status: 200, body: 'self-signed /page', code: undefined });
  });

  it('--app-protocol http2 on an https origin speaks h2 to it', async () => {
    const port = (h2Origin.address() as AddressInfo).port;
    expect(await through(`https://127.0.0.1:${port}`, ['--app-protocol', 'http2', '--origin-ca', certs.caFile])).toEqual({
      status: 200,
      body: 'h2 /page over 2.0',
      code: undefined,
    });
  });

  it('origin flags that make no sense are refused before anything starts: BEAM_ERR_BAD_OPTION', async () => {
    for (const args of [
      ['http', String(origin.port), '--origin-insecure'],
      ['http', 'https://127.0.0.1:1', '--origin-ca', certs.caFile, '--origin-insecure'],
      ['http', 'https://127.0.0.1:1', '--origin-ca', '/no/such/file.pem'],
      ['http', 'https://127.0.0.1:1/some/path'],
      ['http', String(origin.port), '--app-protocol', 'http3'],
      ['tcp', String(origin.port), '--app-protocol', 'http2'],
    ]) {
      const p = new BeamProcess([...args, '--server', server.url, '--json']);
      const error = await p.waitFor('error');
      expect(error['code'], args.join(' ')).toBe('BEAM_ERR_BAD_OPTION');
      expect(await p.exited).toBe(1);
    }
  });
});
