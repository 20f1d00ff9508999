/**
 * Runs inside the app's frame, first thing in every HTML page the page
 * (page.ts) hands it, and in a top-level first document after the loader
 * (loader.ts):
 * - a WebSocket class that sends the app's same-origin WebSockets (Vite's
 *   hot module reload among them) through the peer-to-peer session of the
 *   page above, as whole messages the agent passes on to the origin
 *   (shared/ws-messages.ts). A WebSocket to anywhere else, or one the page
 *   cannot carry, is the browser's own. One opened while the page is still
 *   connecting (its badge says so: the bootstrap runs the page's code once
 *   the app's first document has loaded) waits for the page's tunnel, up to
 *   WS_WAIT_MS, and is the browser's own only then: a long-lived socket
 *   (Vite's) is not left on the gateway for its whole life;
 * - the app's own Service Worker is not registered: at the share's scope it
 *   would replace Beam's, which carries every request of the app.
 */

interface Sink {
  open(protocol: string): void;
  message(kind: 'text' | 'binary', data: string | ArrayBuffer): void;
  close(code: number, reason: string, wasClean: boolean): void;
  error(): void;
}
interface Carrier {
  send(kind: 'text' | 'binary', data: string | ArrayBuffer): void;
  close(code: number, reason: string): void;
}
type Tunnel = (url: string, protocols: string[], sink: Sink) => Carrier | undefined;

/** How long a WebSocket opened while Beam's page connects waits for the page's tunnel. */
const WS_WAIT_MS = 5000;

(() => {
  const Native = window.WebSocket;
  // Beam's page: above, or (a top-level first document: browser-client/loader.ts, which runs first) in a frame below.
  type PageWindow = { __beamWebSocket?: Tunnel; __beam?: { path?: string }; document?: Document };
  let page = (window as { __beamPage?: () => unknown }).__beamPage as () => PageWindow | null | undefined;
  try {
    // Beam's page names its config; the app's first document may run before the page's own script does.
    if (!page && (window.parent === window || !window.parent.document.getElementById('beam-config'))) return;
    page ??= () => window.parent as unknown as PageWindow;
  } catch {
    return; // not inside Beam's page
  }
  // Looked up for each socket: until the page runs (or while it has no path), the browser's own carries it.
  const open: Tunnel = (url, protocols, sink) => page?.()?.__beamWebSocket?.(url, protocols, sink);
  /**
   * Beam's page is still connecting: a tunnel may come. Its state once its
   * code runs, its badge before that; neither yet (a top-level first
   * document's page, on its way until its frame has loaded it): the loader's
   * word (loader.ts).
   */
  const soon = (): boolean => {
    try {
      const p = page?.();
      const path = p?.__beam?.path ?? p?.document?.getElementById('beam-badge')?.getAttribute('data-path');
      return path ? path === 'connecting' : (window as { __beamLoading?: boolean }).__beamLoading === true;
    } catch {
      return false;
    }
  };
  /** The browser's own WebSocket, for a socket that waited for a tunnel in vain. */
  const native: Tunnel = (url, protocols, sink) => {
    const ws = new Native(url, protocols);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => sink.open(ws.protocol);
    ws.onmessage = (e: MessageEvent) => sink.message(typeof e.data === 'string' ? 'text' : 'binary', e.data as string | ArrayBuffer);
    ws.onerror = () => sink.error();
    ws.onclose = (e: CloseEvent) => sink.close(e.code, e.reason, e.wasClean);
    return { send: (_kind, data) => ws.send(data), close: (code, reason) => ws.close(code, reason) };
  };

  class BeamWebSocket extends EventTarget {
    static readonly CONNECTING = 0;
    static readonly OPEN = 1;
    static readonly CLOSING = 2;
    static readonly CLOSED = 3;
    readonly CONNECTING = 0;
    readonly OPEN = 1;
    readonly CLOSING = 2;
    readonly CLOSED = 3;
    readonly url: string;
    readyState = 0;
    protocol = '';
    readonly extensions = '';
    binaryType: BinaryType = 'blob';
    bufferedAmount = 0;
    onopen: ((e: Event) => void) | null = null;
    onmessage: ((e: MessageEvent) => void) | null = null;
    onclose: ((e: CloseEvent) => void) | null = null;
    onerror: ((e: Event) => void) | null = null;
    // Set in the constructor unless it returns the browser's own socket instead; undefined while it waits for the page's tunnel.
    private carrier: Carrier | undefined;
    /** Sends wait on Blob reads; this keeps them in order. */
    private queue: Promise<void> = Promise.resolve();

    constructor(url: string | URL, protocols?: string | string[]) {
      super();
      const resolved = new URL(String(url), location.href);
      if (resolved.protocol === 'http:') resolved.protocol = 'ws:';
      if (resolved.protocol === 'https:') resolved.protocol = 'wss:';
      this.url = resolved.href;
      const list = protocols === undefined ? [] : Array.isArray(protocols) ? protocols : [protocols];
      const sink: Sink = {
        open: (protocol) => {
          this.readyState = 1;
          this.protocol = protocol;
          this.fire(new Event('open'));
        },
        message: (kind, data) => {
          if (this.readyState !== 1) return;
          const payload = kind === 'text' ? data : this.binaryType === 'arraybuffer' ? data : new Blob([data as ArrayBuffer]);
          this.fire(new MessageEvent('message', { data: payload, origin: resolved.origin }));
        },
        close: (code, reason, wasClean) => {
          if (this.readyState === 3) return;
          this.readyState = 3;
          this.fire(new CloseEvent('close', { code, reason, wasClean }));
        },
        error: () => this.fire(new Event('error')),
      };
      this.carrier = open(this.url, list, sink);
      if (this.carrier) return;
      // biome-ignore lint/correctness/noConstructorReturn: with no tunnel to carry it, the page's own WebSocket stands in for this one.
      if (!soon()) return new Native(url, protocols) as unknown as BeamWebSocket;
      const until = Date.now() + WS_WAIT_MS;
      const wait = setInterval(() => {
        if (this.readyState !== 0) clearInterval(wait);
        else {
          this.carrier = open(this.url, list, sink) ?? (soon() && Date.now() < until ? undefined : native(this.url, list, sink));
          if (this.carrier) clearInterval(wait);
        }
      }, 25);
    }

    private fire(event: Event): void {
      this.dispatchEvent(event);
      const handler = (this as unknown as Record<string, unknown>)[`on${event.type}`];
      if (typeof handler === 'function') (handler as (e: Event) => void).call(this, event);
    }

    send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      if (this.readyState === 0) throw new DOMException("Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.", 'InvalidStateError');
      const carrier = this.carrier;
      if (this.readyState !== 1 || !carrier) return;
      if (typeof data === 'string') {
        this.queue = this.queue.then(() => carrier.send('text', data));
      } else if (data instanceof Blob) {
        this.queue = this.queue.then(async () => carrier.send('binary', await data.arrayBuffer()));
      } else {
        const view = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
        const copy = view.slice().buffer;
        this.queue = this.queue.then(() => carrier.send('binary', copy));
      }
    }

    close(code = 1000, reason = ''): void {
      if (this.readyState >= 2) return;
      const carrier = this.carrier;
      if (!carrier) {
        // Closed while it waited for a tunnel: it fails, as a socket closed before it connected does.
        this.readyState = 3;
        this.fire(new Event('error'));
        this.fire(new CloseEvent('close', { code: 1006, reason: '', wasClean: false }));
        return;
      }
      this.readyState = 2;
      this.queue = this.queue.then(() => carrier.close(code, reason));
    }
  }

  (window as unknown as { WebSocket: unknown }).WebSocket = BeamWebSocket;

  const workers = navigator.serviceWorker as ServiceWorkerContainer | undefined;
  if (workers) {
    workers.register = (script: string | URL): Promise<ServiceWorkerRegistration> => {
      console.warn(`[beam] ${String(script)} was not registered: through a Beam share, Beam's own Service Worker carries the app's requests.`);
      return Promise.reject(new DOMException("The app's Service Worker is not registered through a Beam share", 'NotSupportedError'));
    };
  }
})();
