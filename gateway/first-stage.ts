/**
 * A browser page's first stage. A new visitor's bootstrap page loads the
 * app's first document in its frame through the gateway's HTTP path at once,
 * as its HTML is parsed, instead of after its own scripts, its worker and its
 * bridge are up (about 100 ms more on a 2-core machine: docs/benchmarks.md).
 * The page takes the app's later requests over once it runs.
 *
 * The bootstrap's response opens a stage and marks the browser with its
 * cookie (BROWSER_FRAME_COOKIE: HttpOnly, SameSite=Strict, short-lived).
 * Requests that carry it are the page's first stage: the gateway carries them
 * as on its HTTP path and keeps what the page needs to go on from them, which
 * the page collects once (FIRST_STAGE_PATH):
 * - the app's cookies: its responses' Set-Cookie lands in the browser's own
 *   jar, but the page's requests carry the page's jar (browser-client/jar.ts),
 *   and scripts cannot read HttpOnly cookies out of the browser's;
 * - the origin's address, for the page to point localhost URLs at the share;
 * - how the app's first document was answered (a private share's 401 without
 *   its secret: the page loads it again over its own path, with the secret).
 *
 * Bounded: MAX_FIRST_STAGES stages, each open FIRST_STAGE_TTL_MS, keeping
 * MAX_FIRST_STAGE_COOKIES cookies of MAX_FIRST_STAGE_COOKIE_BYTES in all. The
 * collection answers only the share's own pages (fetch metadata), so another
 * share's page on the same site cannot end a stage that is not its own.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import {
  BROWSER_FRAME_COOKIE,
  FIRST_STAGE_TTL_MS,
  FIRST_STAGE_WAIT_MS,
  MAX_FIRST_STAGE_COOKIE_BYTES,
  MAX_FIRST_STAGE_COOKIES,
  MAX_FIRST_STAGES,
  MAX_REWRITE_BYTES,
} from '../shared/constants.js';
import type { FirstStageReport } from '../shared/first-stage.js';
import { injectScript, isHtml, rewriteLocal } from '../shared/rewrite.js';

export interface FirstStage {
  readonly id: string;
  expires: number;
  /** Requests of the stage whose response head is not in yet. */
  inFlight: number;
  cookieCount: number;
  cookieBytes: number;
  report: FirstStageReport;
  waiters: Array<() => void>;
}

/** The value of cookie `name` in a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

export class FirstStages {
  private readonly stages = new Map<string, FirstStage>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  get size(): number {
    return this.stages.size;
  }

  /** A new stage, for a bootstrap page about to be served; none past MAX_FIRST_STAGES (a stage a page relies on is never dropped early). */
  open(): FirstStage | undefined {
    this.sweep();
    if (this.stages.size >= MAX_FIRST_STAGES) return undefined;
    const stage: FirstStage = {
      id: randomBytes(16).toString('base64url'),
      expires: this.now() + FIRST_STAGE_TTL_MS,
      inFlight: 0,
      cookieCount: 0,
      cookieBytes: 0,
      report: { cookies: [] },
      waiters: [],
    };
    this.stages.set(stage.id, stage);
    return stage;
  }

  /** The Set-Cookie header that marks the browser with `stage` (or, with no stage, clears the mark). */
  static cookie(stage: FirstStage | undefined): string {
    const attributes = 'Path=/; HttpOnly; SameSite=Strict';
    return stage
      ? `${BROWSER_FRAME_COOKIE}=${stage.id}; Max-Age=${Math.floor(FIRST_STAGE_TTL_MS / 1000)}; ${attributes}`
      : `${BROWSER_FRAME_COOKIE}=; Max-Age=0; ${attributes}`;
  }

  /** The open stage a request's Cookie header names, if any. */
  of(cookieHeader: string | undefined): FirstStage | undefined {
    const id = cookieValue(cookieHeader, BROWSER_FRAME_COOKIE);
    if (!id) return undefined;
    const stage = this.stages.get(id);
    if (!stage) return undefined;
    if (stage.expires <= this.now()) {
      this.drop(id);
      return undefined;
    }
    return stage;
  }

  /** A request of the stage is on its way: the page's collection waits for its head. Call the result once it is in, or gone. */
  started(stage: FirstStage): () => void {
    stage.inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      stage.inFlight--;
      if (stage.inFlight === 0) for (const w of stage.waiters.splice(0)) w();
    };
  }

  /** A response head of the stage: its cookies, and for the app's document, how it was answered. */
  answered(stage: FirstStage, target: string, setCookie: string[], document?: { status: number; error?: string; origin?: string }): void {
    const kept: string[] = [];
    for (const c of setCookie) {
      if (stage.cookieCount >= MAX_FIRST_STAGE_COOKIES || stage.cookieBytes + c.length > MAX_FIRST_STAGE_COOKIE_BYTES) break;
      stage.cookieCount++;
      stage.cookieBytes += c.length;
      kept.push(c);
    }
    if (kept.length > 0) stage.report.cookies.push({ target, setCookie: kept });
    if (document) {
      if (!stage.report.document) {
        stage.report.document = { target, status: document.status, ...(document.error ? { error: document.error } : {}) };
      }
      if (document.origin) stage.report.origin = document.origin;
    }
  }

  /** What the stage left for its page, once its requests have their answers' heads (at most FIRST_STAGE_WAIT_MS); the stage closes. */
  async collect(id: string | undefined): Promise<FirstStageReport> {
    const stage = id ? this.stages.get(id) : undefined;
    if (!stage || stage.expires <= this.now()) {
      if (id) this.drop(id);
      return { cookies: [] };
    }
    if (stage.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, FIRST_STAGE_WAIT_MS);
        stage.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.drop(stage.id);
    return stage.report;
  }

  private drop(id: string): void {
    const stage = this.stages.get(id);
    if (!stage) return;
    this.stages.delete(id);
    for (const w of stage.waiters.splice(0)) w();
  }

  /** Expired stages leave from the oldest end. */
  private sweep(): void {
    const now = this.now();
    for (const [id, stage] of this.stages) {
      if (stage.expires > now) break;
      this.drop(id);
    }
  }
}

/** The app's first document can take the page's script: HTML the gateway may hold whole (not encoded, not too big). */
export function rewritable(req: IncomingMessage, status: number, pairs: Array<[string, string]>): boolean {
  if (req.method !== 'GET' || status === 204 || status === 304 || (status >= 100 && status < 200)) return false;
  const header = (name: string): string | undefined => pairs.find(([k]) => k.toLowerCase() === name)?.[1];
  if (!isHtml(header('content-type') ?? '')) return false;
  const encoding = header('content-encoding');
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
  return !(Number(header('content-length') ?? 0) > MAX_REWRITE_BYTES);
}

/**
 * The app's first document on its way to the frame: held whole (up to
 * MAX_REWRITE_BYTES) to put the page's script first in it and point the
 * origin's localhost URLs at the share, as the page does for every later
 * document (browser-client/page.ts). Past the cap it passes as it is.
 */
export class FirstDocument extends Transform {
  private chunks: Buffer[] = [];
  private size = 0;
  private passing = false;
  private readonly shim: string;
  private readonly locals: string[];
  private readonly shareOrigin: string;

  constructor(shim: string, locals: string[], shareOrigin: string) {
    super();
    this.shim = shim;
    this.locals = locals;
    this.shareOrigin = shareOrigin;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.passing) {
      callback(null, chunk);
      return;
    }
    this.size += chunk.byteLength;
    this.chunks.push(chunk);
    if (this.size > MAX_REWRITE_BYTES) {
      this.passing = true;
      for (const c of this.chunks.splice(0)) this.push(c);
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (!this.passing) {
      const text = rewriteLocal(Buffer.concat(this.chunks).toString('utf8'), this.locals, this.shareOrigin);
      this.chunks = [];
      this.push(Buffer.from(injectScript(text, this.shim), 'utf8'));
    }
    callback();
  }
}
