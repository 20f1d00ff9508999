/**
 * The gateway's first stages (gateway/first-stage.ts) on their own: each
 * limit (stages, their lifetime, the cookies one keeps, the collection's
 * wait), and the first document's rewrite, held whole up to its cap.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cookieValue, FirstDocument, type FirstStage, FirstStages, rewritable } from '../gateway/first-stage.js';
import {
  BROWSER_FRAME_COOKIE,
  FIRST_STAGE_TTL_MS,
  FIRST_STAGE_WAIT_MS,
  MAX_FIRST_STAGE_COOKIE_BYTES,
  MAX_FIRST_STAGE_COOKIES,
  MAX_FIRST_STAGES,
  MAX_REWRITE_BYTES,
} from '../shared/constants.js';

afterEach(() => {
  vi.useRealTimers();
});

const cookieOf = (id: string): string => `theme=dark; ${BROWSER_FRAME_COOKIE}=${id}; other=1`;

describe('first stages', () => {
  it('names a stage by its cookie until FIRST_STAGE_TTL_MS has passed', () => {
    let now = 1_000;
    const stages = new FirstStages(() => now);
    const stage = stages.open() as FirstStage;
    expect(stage.id).toMatch(/^[\w-]{22}$/);
    expect(cookieValue(cookieOf(stage.id), BROWSER_FRAME_COOKIE)).toBe(stage.id);
    expect(stages.of(cookieOf(stage.id))).toBe(stage);
    expect(stages.of('theme=dark')).toBeUndefined();
    expect(stages.of(cookieOf('forged'))).toBeUndefined();
    now += FIRST_STAGE_TTL_MS - 1;
    expect(stages.of(cookieOf(stage.id))).toBe(stage);
    now += 1;
    expect(stages.of(cookieOf(stage.id))).toBeUndefined();
    expect(stages.size).toBe(0);
  });

  it(`opens ${MAX_FIRST_STAGES} stages at once, then none until one ends (a stage a page relies on is never dropped early)`, async () => {
    let now = 0;
    const stages = new FirstStages(() => now);
    const first = stages.open() as FirstStage;
    for (let i = 1; i < MAX_FIRST_STAGES; i++) expect(stages.open()).toBeDefined();
    expect(stages.open()).toBeUndefined();
    expect(stages.of(cookieOf(first.id))).toBe(first);
    await stages.collect(first.id);
    expect(stages.open()).toBeDefined();
    expect(stages.open()).toBeUndefined();
    // Expired stages make room too.
    now += FIRST_STAGE_TTL_MS;
    expect(stages.open()).toBeDefined();
    expect(stages.size).toBe(1);
  });

  it(`keeps ${MAX_FIRST_STAGE_COOKIES} Set-Cookie headers of a stage, ${MAX_FIRST_STAGE_COOKIE_BYTES} bytes in all, and the first document's answer`, async () => {
    const stages = new FirstStages();
    const stage = stages.open() as FirstStage;
    const many = Array.from({ length: MAX_FIRST_STAGE_COOKIES - 2 }, (_, i) => `c${i}=1`);
    stages.answered(stage, '/', many, { status: 200, origin: 'localhost:3000' });
    stages.answered(stage, '/app.js', ['a=1', 'b=2', 'c=3']);
    stages.answered(stage, '/more', ['d=4']);
    stages.answered(stage, '/frame', [], { status: 404 });
    const report = await stages.collect(stage.id);
    expect(report.cookies).toEqual([
      { target: '/', setCookie: many },
      { target: '/app.js', setCookie: ['a=1', 'b=2'] },
    ]);
    expect(report.origin).toBe('localhost:3000');
    expect(report.document).toEqual({ target: '/', status: 200 });
    // Collected once: the stage is gone.
    expect(await stages.collect(stage.id)).toEqual({ cookies: [] });
    expect(stages.of(cookieOf(stage.id))).toBeUndefined();

    const big = stages.open() as FirstStage;
    const half = `big=${'x'.repeat(MAX_FIRST_STAGE_COOKIE_BYTES / 2 - 4)}`;
    stages.answered(big, '/', [half, half, 'small=1']);
    expect((await stages.collect(big.id)).cookies).toEqual([{ target: '/', setCookie: [half, half] }]);
  });

  it('a collection waits for the stage requests still on their way, at most FIRST_STAGE_WAIT_MS', async () => {
    vi.useFakeTimers();
    const stages = new FirstStages();
    const stage = stages.open() as FirstStage;
    const done = stages.started(stage);
    let report: unknown;
    void stages.collect(stage.id).then((r) => {
      report = r;
    });
    await vi.advanceTimersByTimeAsync(FIRST_STAGE_WAIT_MS - 1);
    expect(report).toBeUndefined();
    stages.answered(stage, '/', ['s=1'], { status: 200 });
    done();
    await vi.advanceTimersByTimeAsync(0);
    expect(report).toEqual({ cookies: [{ target: '/', setCookie: ['s=1'] }], document: { target: '/', status: 200 } });

    const late = stages.open() as FirstStage;
    stages.started(late);
    let lateReport: unknown;
    void stages.collect(late.id).then((r) => {
      lateReport = r;
    });
    await vi.advanceTimersByTimeAsync(FIRST_STAGE_WAIT_MS - 1);
    expect(lateReport).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(lateReport).toEqual({ cookies: [] });
  });

  it('marks the browser with an HttpOnly, SameSite=Strict cookie that lives as long as the stage, and clears it', () => {
    const stage = new FirstStages().open() as FirstStage;
    expect(FirstStages.cookie(stage)).toBe(`${BROWSER_FRAME_COOKIE}=${stage.id}; Max-Age=${FIRST_STAGE_TTL_MS / 1000}; Path=/; HttpOnly; SameSite=Strict`);
    expect(FirstStages.cookie(undefined)).toBe(`${BROWSER_FRAME_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict`);
  });
});

async function rewrite(chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of Readable.from(chunks).pipe(new FirstDocument('window.shim = 1', ['localhost:3000'], 'https://app.example.com'))) {
    out.push(chunk as Buffer);
  }
  return Buffer.concat(out);
}

describe("the app's first document", () => {
  it("gets the page's script first and its localhost URLs on the share, across chunks", async () => {
    const html = '<!doctype html><html><head><title>x</title></head><body><a href="http://localhost:3000/a">a</a></body></html>';
    const out = await rewrite([Buffer.from(html.slice(0, 20)), Buffer.from(html.slice(20, 70)), Buffer.from(html.slice(70))]);
    expect(out.toString()).toBe(
      '<!doctype html><html><head><script>window.shim = 1</script><title>x</title></head><body><a href="https://app.example.com/a">a</a></body></html>',
    );
  });

  it(`passes a document over MAX_REWRITE_BYTES as it is`, async () => {
    const chunk = Buffer.alloc(1024 * 1024, 'a');
    const chunks = [Buffer.from('<html><head>http://localhost:3000/'), ...Array.from({ length: MAX_REWRITE_BYTES / chunk.byteLength }, () => chunk)];
    const out = await rewrite(chunks);
    const hash = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(out.byteLength).toBe(Buffer.concat(chunks).byteLength);
    expect(hash(out)).toBe(hash(Buffer.concat(chunks)));
  });

  it('is rewritten only when it is HTML the gateway may hold whole', () => {
    const get = { method: 'GET' } as IncomingMessage;
    const html: Array<[string, string]> = [['Content-Type', 'text/html; charset=utf-8']];
    expect(rewritable(get, 200, html)).toBe(true);
    expect(rewritable(get, 200, [...html, ['Content-Length', String(MAX_REWRITE_BYTES)]])).toBe(true);
    expect(rewritable(get, 200, [...html, ['Content-Length', String(MAX_REWRITE_BYTES + 1)]])).toBe(false);
    expect(rewritable(get, 200, [...html, ['Content-Encoding', 'gzip']])).toBe(false);
    expect(rewritable(get, 200, [['Content-Type', 'application/json']])).toBe(false);
    expect(rewritable(get, 304, html)).toBe(false);
    expect(rewritable({ method: 'HEAD' } as IncomingMessage, 200, html)).toBe(false);
  });
});
