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
import { INSPECT_BODY_BYTES, INSPECT_MAX_EXCHANGES } from '../shared/constants.js';
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
  requestHeaders: HeaderPairs;
  responseHeaders: HeaderPairs = [];
  status: number | undefined;
  statusText: string | undefined;
  error: ErrorCode | undefined;
  durationMs: number | undefined;
  readonly visitor: string;
  readonly path: RequestPath;
  readonly replayOf: string | undefined;
  state: ExchangeSummary['state'] = 'pending';
  readonly requestBody = new Body();
  readonly responseBody = new Body();

  constructor(inspector: Inspector, id: string, start: ExchangeStart) {
    this.inspector = inspector;
    this.id = id;
    this.method = start.method;
    this.target = start.target;
    this.requestHeaders = start.headers;
    this.visitor = start.visitor;
    this.path = start.path;
    this.replayOf = start.replayOf;
  }

  /** The head as it goes to the origin (after Beam's own rewriting). */
  forwarded(target: string, headers: HeaderPairs): void {
    this.target = target;
    this.requestHeaders = headers;
  }

  requestChunk(chunk: Buffer): void {
    if (this.state === 'pending') this.requestBody.add(chunk);
  }

  response(status: number, statusText: string | undefined, headers: HeaderPairs): void {
    if (this.state !== 'pending') return;
    this.status = status;
    this.statusText = statusText;
    this.responseHeaders = headers;
    this.inspector.changed(this);
  }

  responseChunk(chunk: Buffer): void {
    if (this.state === 'pending') this.responseBody.add(chunk);
  }

  /** The response is complete. */
  finish(): void {
    if (this.state !== 'pending') return;
    this.state = 'done';
    this.durationMs = performance.now() - this.started;
    this.inspector.changed(this);
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
      requestBytes: this.requestBody.total,
      responseBytes: this.responseBody.total,
      visitor: this.visitor,
      path: this.path,
      state: this.state,
      replayOf: this.replayOf,
    };
  }

  detail(): ExchangeDetail {
    return {
      ...this.summary(),
      httpVersion: '1.1',
      requestHeaders: this.requestHeaders,
      responseHeaders: this.responseHeaders,
      statusText: this.statusText,
      requestBody: this.requestBody.snapshot(),
      responseBody: this.responseBody.snapshot(),
    };
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
    while (this.exchanges.size > this.max) this.exchanges.delete(this.exchanges.keys().next().value as string);
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
    this.exchanges.clear();
    this.emit('cleared');
  }
}
