/**
 * What the inspector knows: every HTTP exchange the agent forwards to its
 * origin, from every path (direct, TURN, relay, gateway) and from replays.
 *
 * The agent is the only party that sees peer-to-peer traffic in the clear, so
 * this is where ngrok-style inspection has to live. It keeps the latest
 * INSPECT_MAX_EXCHANGES exchanges and the first INSPECT_BODY_BYTES of each
 * body; beyond that it counts bytes and keeps nothing. It doesn't listen:
 * peer-agent/inspector-server.ts serves it on loopback.
 */
import { EventEmitter } from 'node:events';
import { INSPECT_BODY_BYTES, INSPECT_MAX_EXCHANGES, INSPECT_SLAB_BYTES } from '../shared/constants.js';
import type { ErrorCode } from '../shared/errors.js';

/** How a request reached the agent; 'replay' is the inspector's own. */
export type { RequestPath } from '../shared/paths.js';

import type { RequestPath } from '../shared/paths.js';

export type HeaderPairs = Array<[string, string]>;

export interface ExchangeSummary {
  id: string;
  /** ISO 8601, when the request head arrived. */
  startedAt: string;
  method: string;
  target: string;
  /** Unset while the origin has not answered. */
  status: number | undefined;
  /** Set when Beam answered instead of the origin (refused, unreachable, timed out) or the exchange broke off. */
  error: ErrorCode | undefined;
  /** From the request head's arrival to the response's last byte. */
  durationMs: number | undefined;
  requestBytes: number;
  responseBytes: number;
  /** The visitor's address when known, else its session. */
  visitor: string;
  path: RequestPath;
  state: 'pending' | 'done' | 'failed';
  /** For a replay, the exchange it replayed. */
  replayOf: string | undefined;
}

export interface CapturedBody {
  /** The first INSPECT_BODY_BYTES bytes. */
  bytes: Buffer;
  /** More bytes passed than were kept. */
  truncated: boolean;
}

export interface ExchangeDetail extends ExchangeSummary {
  httpVersion: '1.1';
  /** The headers as the origin got them (hop-by-hop and Beam's own removed). */
  requestHeaders: HeaderPairs;
  responseHeaders: HeaderPairs;
  statusText: string | undefined;
  requestBody: CapturedBody;
  responseBody: CapturedBody;
}

export interface InspectorEvents {
  /** An exchange began or moved on (response head, end, failure); `summary()` takes a snapshot. */
  exchange: [Capture];
  cleared: [];
}

class Body {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  total = 0;

  add(chunk: Buffer): void {
    this.total += chunk.byteLength;
    if (this.kept >= INSPECT_BODY_BYTES) return;
    const part = chunk.subarray(0, INSPECT_BODY_BYTES - this.kept);
    // A copy: the stream may reuse its buffer.
    this.chunks.push(Buffer.from(part));
    this.kept += part.byteLength;
  }

  snapshot(): CapturedBody {
    return { bytes: Buffer.concat(this.chunks), truncated: this.total > this.kept };
  }

  /** Writes what was kept at `at` in `into`; returns the bytes written. */
  copyTo(into: Buffer, at: number): number {
    let n = 0;
    for (const c of this.chunks) n += c.copy(into, at + n);
    return n;
  }

  get keptBytes(): number {
    return this.kept;
  }
}

/**
 * Where ended exchanges keep their headers and bodies: slabs of
 * INSPECT_SLAB_BYTES, written front to back, and written again once all of
 * their exchanges have left (oldest first), so the store allocates none in
 * the steady state. Kept as objects (header pairs, body copies in the
 * Buffer pool's slabs), the latest exchanges cost a busy agent 15-18 µs of
 * garbage collection a request, and a new slab for every few hundred of them
 * nearly as much; reused slabs cost it nothing (docs/benchmarks.md).
 */
export interface Slab {
  readonly bytes: Buffer;
  /** Written up to here. */
  used: number;
  /** Kept exchanges whose bytes are in it. */
  exchanges: number;
}

class Slabs {
  private current: Slab | undefined;
  /** Slabs whose exchanges all left, to write again (a new one each time would cost the collector as much as the objects did). */
  private readonly free: Slab[] = [];

  /** Room for `bytes`: the slab and the offset to write at. */
  take(bytes: number): { slab: Slab; at: number } {
    if (bytes > INSPECT_SLAB_BYTES) return { slab: { bytes: Buffer.allocUnsafeSlow(bytes), used: bytes, exchanges: 1 }, at: 0 };
    let slab = this.current;
    if (!slab || slab.used + bytes > INSPECT_SLAB_BYTES) {
      if (slab && slab.exchanges === 0) this.free.push(slab);
      slab = this.free.pop() ?? { bytes: Buffer.allocUnsafeSlow(INSPECT_SLAB_BYTES), used: 0, exchanges: 0 };
      slab.used = 0;
      this.current = slab;
    }
    const at = slab.used;
    slab.used += bytes;
    slab.exchanges++;
    return { slab, at };
  }

  /** An exchange in `slab` left. */
  release(slab: Slab): void {
    slab.exchanges--;
    if (slab.exchanges === 0 && slab !== this.current && slab.bytes.byteLength === INSPECT_SLAB_BYTES && this.free.length < 2) this.free.push(slab);
  }
}

/** One exchange being recorded; every method is safe to call after it ended (it then does nothing). */
export class Capture {
  readonly id: string;
  private readonly inspector: Inspector;
  private readonly started = performance.now();
  /** When the request head arrived, in ms since the epoch (ISO 8601 in summaries). */
  private readonly startedAtMs = Date.now();
  method: string;
  target: string;
  /** While the exchange is pending; once it ended, its slab holds them (and its bodies). */
  private live:
    | { requestHeaders: HeaderPairs; responseHeaders: HeaderPairs; statusText: string | undefined; requestBody: Body; responseBody: Body }
    | undefined;
  private slab: Slab | undefined;
  private at = 0;
  private headersLength = 0;
  private requestKept = 0;
  private responseKept = 0;
  private requestTotal = 0;
  private responseTotal = 0;
  status: number | undefined;
  error: ErrorCode | undefined;
  durationMs: number | undefined;
  readonly visitor: string;
  readonly path: RequestPath;
  readonly replayOf: string | undefined;
  state: ExchangeSummary['state'] = 'pending';

  constructor(inspector: Inspector, id: string, start: ExchangeStart) {
    this.inspector = inspector;
    this.id = id;
    this.method = start.method;
    this.target = start.target;
    this.live = { requestHeaders: start.headers, responseHeaders: [], statusText: undefined, requestBody: new Body(), responseBody: new Body() };
    this.visitor = start.visitor;
    this.path = start.path;
    this.replayOf = start.replayOf;
  }

  /** The head as it goes to the origin (after Beam's own rewriting). */
  forwarded(target: string, headers: HeaderPairs): void {
    this.target = target;
    if (this.live) this.live.requestHeaders = headers;
  }

  requestChunk(chunk: Buffer): void {
    if (this.live) this.live.requestBody.add(chunk);
  }

  response(status: number, statusText: string | undefined, headers: HeaderPairs): void {
    if (!this.live) return;
    this.status = status;
    this.live.statusText = statusText;
    this.live.responseHeaders = headers;
    this.inspector.changed(this);
  }

  responseChunk(chunk: Buffer): void {
    if (this.live) this.live.responseBody.add(chunk);
  }

  /** The response is complete. */
  finish(): void {
    if (this.state !== 'pending') return;
    this.state = 'done';
    this.durationMs = performance.now() - this.started;
    this.store();
    this.inspector.changed(this);
  }

  /** The exchange ended: its headers and bodies go into a slab, and their objects to the young generation's next collection. */
  private store(): void {
    const live = this.live;
    if (!live) return;
    this.live = undefined;
    const headers = JSON.stringify([live.requestHeaders, live.responseHeaders, live.statusText ?? null]);
    this.headersLength = Buffer.byteLength(headers);
    this.requestKept = live.requestBody.keptBytes;
    this.responseKept = live.responseBody.keptBytes;
    this.requestTotal = live.requestBody.total;
    this.responseTotal = live.responseBody.total;
    const { slab, at } = this.inspector.slabs.take(this.headersLength + this.requestKept + this.responseKept);
    slab.bytes.write(headers, at, 'utf8');
    live.requestBody.copyTo(slab.bytes, at + this.headersLength);
    live.responseBody.copyTo(slab.bytes, at + this.headersLength + this.requestKept);
    this.slab = slab;
    this.at = at;
  }

  /** The inspector let the exchange go: its room in the slab may be written again. */
  release(): void {
    const slab = this.slab;
    this.slab = undefined;
    this.live = undefined;
    if (slab) this.inspector.slabs.release(slab);
  }

  /** Headers, status text and bodies: the live ones, or read back from the slab. */
  private parts(): {
    requestHeaders: HeaderPairs;
    responseHeaders: HeaderPairs;
    statusText: string | undefined;
    requestBody: CapturedBody;
    responseBody: CapturedBody;
  } {
    const live = this.live;
    if (live) return { ...live, requestBody: live.requestBody.snapshot(), responseBody: live.responseBody.snapshot() };
    const slab = (this.slab as Slab).bytes;
    const [requestHeaders, responseHeaders, statusText] = JSON.parse(slab.toString('utf8', this.at, this.at + this.headersLength)) as [
      HeaderPairs,
      HeaderPairs,
      string | null,
    ];
    const body = (from: number, kept: number, total: number): CapturedBody => ({
      // A copy: the slab stays the inspector's.
      bytes: Buffer.from(slab.subarray(from, from + kept)),
      truncated: total > kept,
    });
    const requestAt = this.at + this.headersLength;
    return {
      requestHeaders,
      responseHeaders,
      statusText: statusText ?? undefined,
      requestBody: body(requestAt, this.requestKept, this.requestTotal),
      responseBody: body(requestAt + this.requestKept, this.responseKept, this.responseTotal),
    };
  }

  /**
   * Beam answered for the origin, or the exchange broke off. `status` is what
   * the visitor got, when a head went out.
   */
  fail(code: ErrorCode, status?: number): void {
    if (this.state !== 'pending') return;
    this.state = 'failed';
    this.error = code;
    if (this.status === undefined && status !== undefined) this.status = status;
    this.durationMs = performance.now() - this.started;
    this.store();
    this.inspector.changed(this);
  }

  summary(): ExchangeSummary {
    return {
      id: this.id,
      startedAt: new Date(this.startedAtMs).toISOString(),
      method: this.method,
      target: this.target,
      status: this.status,
      error: this.error,
      durationMs: this.durationMs === undefined ? undefined : Math.round(this.durationMs * 10) / 10,
      requestBytes: this.live ? this.live.requestBody.total : this.requestTotal,
      responseBytes: this.live ? this.live.responseBody.total : this.responseTotal,
      visitor: this.visitor,
      path: this.path,
      state: this.state,
      replayOf: this.replayOf,
    };
  }

  detail(): ExchangeDetail {
    return { ...this.summary(), httpVersion: '1.1', ...this.parts() };
  }
}

export interface ExchangeStart {
  method: string;
  target: string;
  headers: HeaderPairs;
  visitor: string;
  path: RequestPath;
  replayOf?: string;
}

export class Inspector extends EventEmitter<InspectorEvents> {
  private readonly exchanges = new Map<string, Capture>();
  /** Where ended exchanges keep their bytes. */
  readonly slabs = new Slabs();
  private next = 1;
  private readonly max: number;

  /** `max`: exchanges kept (default INSPECT_MAX_EXCHANGES). */
  constructor(options: { max?: number } = {}) {
    super();
    this.max = options.max ?? INSPECT_MAX_EXCHANGES;
  }

  begin(start: ExchangeStart): Capture {
    const capture = new Capture(this, String(this.next++), start);
    this.exchanges.set(capture.id, capture);
    // A Map iterates in insertion order: the first key is the oldest.
    while (this.exchanges.size > this.max) {
      const oldest = this.exchanges.values().next().value as Capture;
      this.exchanges.delete(oldest.id);
      oldest.release();
    }
    this.emit('exchange', capture);
    return capture;
  }

  /** Called by a Capture that moved on. */
  changed(capture: Capture): void {
    if (this.exchanges.get(capture.id) === capture) this.emit('exchange', capture);
  }

  /** Oldest first. */
  list(): ExchangeSummary[] {
    return [...this.exchanges.values()].map((c) => c.summary());
  }

  get(id: string): ExchangeDetail | undefined {
    return this.exchanges.get(id)?.detail();
  }

  details(): ExchangeDetail[] {
    return [...this.exchanges.values()].map((c) => c.detail());
  }

  clear(): void {
    for (const capture of this.exchanges.values()) capture.release();
    this.exchanges.clear();
    this.emit('cleared');
  }
}
