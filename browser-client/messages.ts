/**
 * What the page (page.ts, which holds the WebRTC session) and the Service
 * Worker (sw.ts, which sees the app's requests) say to each other.
 *
 *   page -> worker  {type:'beam:tunnel', locals}  + a MessagePort: "send requests here"
 *   page -> worker  {type:'beam:gateway'}           no tunnel: requests go to the gateway
 *   worker -> page  {type:'beam:need-tunnel'}       the worker restarted and lost its port
 *
 * Then on the port, per request id:
 *   worker -> page  request {method, url, headers, body}; a body over
 *                   WORKER_BUFFERED_BODY_BYTES follows as body* then body-end,
 *                   the page granting WORKER_UPLOAD_WINDOW_BYTES at a time (body-credit)
 *   page -> worker  head {status, statusText, headers}, chunk*, end | error
 *   worker -> page  credit (the app read what was sent: send up to
 *                   WORKER_RESPONSE_WINDOW_BYTES more), cancel (the app stopped reading)
 */
export type HeaderList = Array<[string, string]>;

export interface TunnelOffer {
  type: 'beam:tunnel';
  /** host:port forms of the origin (`localhost:3000`) whose requests the worker sends through the tunnel too. */
  locals: string[];
}

export type ToPage =
  /**
   * `body`: the whole body when small; with `streamed`, it follows as body
   * messages instead. `navigate`: the app's frame is navigating (a redirect
   * that leaves the share takes the whole tab, as a sign-in's must).
   */
  | { type: 'request'; id: number; method: string; url: string; headers: HeaderList; body: ArrayBuffer | null; streamed?: boolean; navigate?: boolean }
  | { type: 'body'; id: number; data: ArrayBuffer }
  | { type: 'body-end'; id: number }
  | { type: 'body-error'; id: number }
  | { type: 'credit'; id: number }
  | { type: 'cancel'; id: number };

export type ToWorker =
  | { type: 'head'; id: number; status: number; statusText: string; headers: HeaderList }
  | { type: 'chunk'; id: number; data: ArrayBuffer }
  | { type: 'end'; id: number }
  /** The agent took `bytes` more of a streamed request body: the worker may send that much more. */
  | { type: 'body-credit'; id: number; bytes: number }
  /** The origin's host:port forms became known (the agent's first answer): the worker takes their requests too. */
  | { type: 'locals'; id: 0; locals: string[] }
  | { type: 'error'; id: number; code: string; message: string };
