/**
 * The part of the `ws` package's client API that transport/relay.ts uses,
 * over the browser's WebSocket, so the relay path (Noise over a WebSocket to
 * the gateway) runs in the page unchanged. A browser shows no status code
 * for a refused upgrade: that is an 'error', which relay.ts reports as
 * BEAM_ERR_SERVER_UNREACHABLE.
 */
import { Buffer } from 'buffer';

type Listener = (...args: never[]) => void;

export default class WebSocketShim {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  private readonly ws: WebSocket;
  private readonly listeners = new Map<string, Listener[]>();

  constructor(url: string, _options?: unknown) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = 'arraybuffer';
    this.ws.addEventListener('open', () => this.emit('open'));
    this.ws.addEventListener('message', (e: MessageEvent) => this.emit('message', Buffer.from(e.data as ArrayBuffer)));
    this.ws.addEventListener('error', () => this.emit('error', new Error('WebSocket error')));
    this.ws.addEventListener('close', (e: CloseEvent) => this.emit('close', e.code, Buffer.from(e.reason)));
  }

  get readyState(): number {
    return this.ws.readyState;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  private emit(event: string, ...args: unknown[]): void {
    for (const l of [...(this.listeners.get(event) ?? [])]) (l as (...a: unknown[]) => void)(...args);
  }

  on(event: string, listener: Listener): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return this;
  }

  once(event: string, listener: Listener): this {
    const wrapped = ((...args: unknown[]) => {
      this.listeners.set(
        event,
        (this.listeners.get(event) ?? []).filter((l) => l !== wrapped),
      );
      (listener as (...a: unknown[]) => void)(...args);
    }) as Listener;
    return this.on(event, wrapped);
  }

  /** `cb` runs once the browser has taken the bytes off its buffer (polled: browsers fire no event for it). */
  send(data: Uint8Array, cb?: () => void): void {
    this.ws.send(new Uint8Array(data));
    if (!cb) return;
    const check = (): void => {
      if (this.ws.bufferedAmount === 0 || this.ws.readyState !== WebSocket.OPEN) cb();
      else setTimeout(check, 5);
    };
    check();
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.close();
  }

  // A browser WebSocket cannot pause its reads; the Noise stream's window bounds what arrives.
  pause(): void {}
  resume(): void {}
}
