/**
 * The relay's sides in this process (gateway/relay.ts attachInProcess): the
 * server's own gateway joins its relay's sessions in memory instead of
 * through a WebSocket to itself over loopback, and the relay splices it as
 * it splices a WebSocket. Measured on loopback with an agent on the relay
 * only (2026-12-05): the server spent 960-980 ms of CPU per 100 MiB relayed
 * to its gateway, against 1,160-1,220 ms with the loopback WebSocket; the
 * agent's end, not the server, sets the rate.
 *
 * A module of its own: a browser page, which connects to relays, never
 * loads it.
 */
import { EventEmitter } from 'node:events';
import { RELAY_HIGH_WATER_BYTES, RELAY_LOW_WATER_BYTES } from '../shared/constants.js';
import { type ErrorCode, isErrorCode } from '../shared/errors.js';
import type { Pipe } from './secure.js';

/** What the relay server needs of one side: a ws WebSocket, or a side in this process (inProcessSide). */
export interface RelaySide {
  readonly bufferedAmount: number;
  send(data: Buffer, options: { binary: boolean }, cb?: (err?: Error) => void): void;
  pause(): void;
  resume(): void;
  close(code?: number, reason?: string): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
  on(event: 'close' | 'error', listener: () => void): this;
  off(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
}

/**
 * A relay side in this process and the Pipe at its other end. Messages go
 * over in order, a microtask later (as on transport/local.ts's channel);
 * backpressure works as on a WebSocket: the relay pauses this side when the
 * far side is backed up, and the pipe's send says wait until it resumes.
 */
export function inProcessSide(): { side: RelaySide; pipe: Pipe } {
  const side = new InProcessSide();
  return { side, pipe: side.pipe };
}

class InProcessSide extends EventEmitter implements RelaySide {
  /** Bytes the relay sent toward the pipe, not yet handed over. */
  bufferedAmount = 0;
  private closed = false;
  private paused = false;
  private closeCode: ErrorCode | undefined;
  private toPipe: Array<{ data: Buffer; cb: ((err?: Error) => void) | undefined }> = [];
  private toRelay: Buffer[] = [];
  /** Bytes the pipe sent, not yet handed to the relay (held while the relay pauses this side, as a paused socket is not read). */
  private toRelayBytes = 0;
  private draining = false;
  private scheduled = false;
  private messageCb: ((bytes: Uint8Array) => void) | undefined;
  private early: Buffer[] = [];
  private readonly drainCbs: Array<() => void> = [];
  private readonly closeCbs: Array<() => void> = [];
  readonly pipe: Pipe;

  constructor() {
    super();
    this.pipe = {
      send: (bytes) => {
        if (this.closed) return true;
        this.toRelay.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        this.toRelayBytes += bytes.byteLength;
        this.schedule();
        if (this.toRelayBytes < RELAY_HIGH_WATER_BYTES) return true;
        this.draining = true;
        return false;
      },
      bufferedAmount: () => this.toRelayBytes,
      onDrain: (cb) => this.drainCbs.push(cb),
      onMessage: (cb) => {
        this.messageCb = cb;
        for (const m of this.early.splice(0)) cb(m);
      },
      onClose: (cb) => this.closeCbs.push(cb),
      closeCode: () => this.closeCode,
      close: () => this.close(1000, 'closed'),
    };
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    // One at a time: the relay may pause this side on any of them.
    while (!this.paused && !this.closed && this.toRelay.length > 0) {
      const data = this.toRelay.shift() as Buffer;
      this.toRelayBytes -= data.byteLength;
      this.emit('message', data, true);
    }
    if (this.draining && !this.paused && this.toRelayBytes <= RELAY_LOW_WATER_BYTES) {
      this.draining = false;
      for (const cb of this.drainCbs) cb();
    }
    for (const { data, cb } of this.toPipe.splice(0)) {
      this.bufferedAmount -= data.byteLength;
      if (this.closed) continue;
      if (this.messageCb) this.messageCb(data);
      else this.early.push(data);
      cb?.();
    }
  }

  send(data: Buffer, _options: { binary: boolean }, cb?: (err?: Error) => void): void {
    if (this.closed) return;
    this.bufferedAmount += data.byteLength;
    this.toPipe.push({ data, cb });
    this.schedule();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.schedule();
  }

  close(_code?: number, reason?: string): void {
    if (this.closed) return;
    // What was already on its way goes first, as a WebSocket's close follows its messages.
    this.flush();
    this.closed = true;
    if (isErrorCode(reason)) this.closeCode = reason;
    this.toPipe = [];
    this.toRelay = [];
    this.toRelayBytes = 0;
    this.bufferedAmount = 0;
    queueMicrotask(() => {
      this.emit('close');
      for (const cb of this.closeCbs) cb();
    });
  }
}
