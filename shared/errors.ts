/**
 * The registry of Beam's error codes. Every error that crosses a process or
 * reaches a user has one of these codes; logs and tests match on the code,
 * never on the message. Each entry carries the HTTP status a gateway answers
 * with and a message that tells a person what to do next.
 */

export const ERRORS = {
  BEAM_ERR_SHARE_NOT_FOUND: {
    status: 404,
    message: 'No share with this name is online. Check the link, or ask its owner to run `beam` again.',
  },
  BEAM_ERR_AGENT_UNREACHABLE: {
    status: 502,
    message: 'The share is registered but its agent could not be reached. Ask its owner to check that `beam` is still running.',
  },
  BEAM_ERR_ORIGIN_UNREACHABLE: {
    status: 502,
    message: 'The agent is running but nothing answers on the port it shares. Start the local server, or share the right port.',
  },
  BEAM_ERR_ORIGIN_TLS: {
    status: 502,
    message:
      "The local server's TLS certificate was refused. Trust its authority with --origin-ca <file>, or for a self-signed development server pass --origin-insecure.",
  },
  BEAM_ERR_SIGN_IN_REQUIRED: {
    status: 401,
    message: 'This share asks visitors to sign in, which takes a browser. Open its link in one, or ask its owner for --auth for scripts.',
  },
  BEAM_ERR_SIGN_IN_FAILED: {
    status: 400,
    message: 'Signing in did not complete (it was not started here, took too long, or the provider refused it). Open the link again to start over.',
  },
  BEAM_ERR_POLICY_DENIED: {
    status: 403,
    message: "The share's policy does not let this request through. Ask the share's owner if you need it.",
  },
  BEAM_ERR_WEBHOOK_SIGNATURE: {
    status: 401,
    message:
      "The request's webhook signature is missing, wrong or too old, so the share did not pass it on. Check the signing secret given to --verify-webhook-secret and the sender's clock.",
  },
  BEAM_ERR_BODY_TOO_LARGE: {
    status: 413,
    message: 'The request body is larger than this share reads whole to check a signature. Send a smaller body.',
  },
  BEAM_ERR_ORIGIN_TIMEOUT: {
    status: 504,
    message: 'The local server took too long to answer. Check that it is not stuck, or raise --origin-timeout.',
  },
  BEAM_ERR_NAME_TAKEN: {
    status: 409,
    message: 'This share name is already in use. Pick another with --name, or leave it out to get a random one.',
  },
  BEAM_ERR_POOL_MISMATCH: {
    status: 409,
    message: 'A pool and a single share cannot share a name. Start every agent of a pool with --pool, the same --name and the same token.',
  },
  BEAM_ERR_POOL_COVERED: {
    status: 409,
    message: 'You already have a session with every agent of this pool.',
  },
  BEAM_ERR_NAME_INVALID: {
    status: 400,
    message: 'Share names are 3 to 63 characters of a-z, 0-9 and "-", and cannot start or end with "-".',
  },
  BEAM_ERR_BAD_MESSAGE: {
    status: 400,
    message: 'A message did not match the protocol and was dropped. Update Beam on both ends if this repeats.',
  },
  BEAM_ERR_PROTOCOL_VERSION: {
    status: 426,
    message: 'This Beam speaks another protocol version than the server. Update Beam.',
  },
  BEAM_ERR_FRAME_TOO_LARGE: {
    status: 413,
    message: 'A stream frame exceeded the size limit and the connection was closed.',
  },
  BEAM_ERR_FRAME_UNKNOWN: {
    status: 400,
    message: 'A stream frame had an unknown type and the connection was closed.',
  },
  BEAM_ERR_FRAME_MALFORMED: {
    status: 400,
    message: 'A stream frame was truncated or malformed and the connection was closed.',
  },
  BEAM_ERR_FLOW_CONTROL: {
    status: 502,
    message: 'The peer sent more than it was allowed to; the stream was reset.',
  },
  BEAM_ERR_TOO_MANY_STREAMS: {
    status: 503,
    message: 'Too many requests are in flight to this share. Retry shortly.',
  },
  BEAM_ERR_STREAM_RESET: {
    status: 502,
    message: 'The other side reset the stream.',
  },
  BEAM_ERR_PEER_GONE: {
    status: 502,
    message: 'The connection to the agent closed while the request was in flight.',
  },
  BEAM_ERR_SIGNALING_LOST: {
    status: 502,
    message:
      'The other side lost its connection to the signaling server. Paths already up carry on while the other side answers on them; new ones need a new session.',
  },
  BEAM_ERR_HEAD_TOO_LARGE: {
    status: 431,
    message: 'The request headers are too large.',
  },
  BEAM_ERR_LIMIT_REACHED: {
    status: 429,
    message: 'A limit on shares or sessions was reached. Close some and retry.',
  },
  BEAM_ERR_SESSION_NOT_FOUND: {
    status: 404,
    message: 'The signaling session does not exist or has closed.',
  },
  BEAM_ERR_UNAUTHORIZED: {
    status: 401,
    message: "A credential is missing or wrong: the share's --auth user name and password, or a signaling role's token.",
  },
  BEAM_ERR_BAD_REQUEST: {
    status: 400,
    message: 'The request was malformed.',
  },
  BEAM_ERR_SERVER_UNREACHABLE: {
    status: 502,
    message:
      'The Beam server (with --via libp2p: the bootstrap peers) could not be reached. Check --server (--bootstrap), or leave it out to use the embedded server.',
  },
  BEAM_ERR_BAD_OPTION: {
    status: 400,
    message: 'A command-line option has an invalid value.',
  },
  BEAM_ERR_STORE_UNAVAILABLE: {
    status: 503,
    message: 'The server cannot reach its Redis store right now. Retry in a few seconds.',
  },
  BEAM_ERR_NAME_RESERVED: {
    status: 403,
    message: 'This share name is reserved for another agent token on this server. Pick another with --name.',
  },
  BEAM_ERR_MAX_VISITORS: {
    status: 503,
    message: 'This share already has as many visitors as its owner allows (--max-visitors). Retry in a minute.',
  },
  BEAM_ERR_CONFIG: {
    status: 400,
    message: 'The config file (beam.yml) is not valid. Fix the line it names; `beam start --help` shows the format.',
  },
  BEAM_ERR_RATE_LIMITED: {
    status: 429,
    message:
      'Too many requests from this visitor: to this share (its owner set --rate-limit), or to the Beam server (its limits on connections, sessions and signals per address). Retry after the time in Retry-After, or the time the message names.',
  },
  BEAM_ERR_FORBIDDEN: {
    status: 403,
    message: 'Your address is not allowed to reach this share (its owner set --allow-ip or --deny-ip).',
  },
  BEAM_ERR_PRIVATE: {
    status: 401,
    message: 'This share is private. Open it with its full link (the one with the secret), or ask its owner for it.',
  },
  BEAM_ERR_SHARE_KIND: {
    status: 400,
    message: 'This share carries raw TCP, not HTTP (or the other way round). Open a TCP share with `beam connect <link>`.',
  },
  BEAM_ERR_IDENTITY: {
    status: 500,
    message: "The agent's identity key could not be read or written.",
  },
  BEAM_ERR_PEER_MISMATCH: {
    status: 502,
    message: "The peer did not prove the identity the link names: someone may be in the middle. Get a fresh link from the share's owner.",
  },
  BEAM_ERR_HANDSHAKE_FAILED: {
    status: 502,
    message: 'The encrypted handshake with the peer failed. Retry; update Beam on both ends if this repeats.',
  },
  BEAM_ERR_RELAY_REFUSED: {
    status: 403,
    message: 'The relay only splices sessions set up through signaling, once per side. Open a new session.',
  },
  BEAM_ERR_RELAY_TIMEOUT: {
    status: 504,
    message: 'The other side of a relayed session did not reach the relay in time.',
  },
  BEAM_ERR_RELAY_CAPPED: {
    status: 502,
    message: "The relay ended this session at the Beam server's cap (--relay-max-mib, --relay-max-seconds). Retry: a new session starts anew.",
  },
  BEAM_ERR_EXCHANGE_GONE: {
    status: 404,
    message: 'The inspector no longer holds this request: it keeps the latest ones only, and Clear drops them all.',
  },
  BEAM_ERR_REPLAY_TRUNCATED: {
    status: 409,
    message: "The inspector kept only the start of this request's body, so it cannot replay it as is. Edit the body, then replay.",
  },
  BEAM_ERR_INSPECT_HOST: {
    status: 403,
    message: 'The inspector answers only pages it served itself, at 127.0.0.1 or localhost: open it from the address `beam` printed.',
  },
  BEAM_ERR_INTERNAL: {
    status: 500,
    message: 'Beam hit a bug of its own and dropped this request or message. Retry; if it repeats, report it with the log line that has this code.',
  },
  BEAM_ERR_BAD_FRAMING: {
    status: 400,
    message:
      "The request's body framing was ambiguous (Content-Length values that disagree or are no number, a length with no body, or a body of another length), so it was refused, not guessed at. Send one Content-Length that matches the body, or chunked encoding.",
  },
  BEAM_ERR_HOLE_PUNCH_FAILED: {
    status: 502,
    message: 'No direct path to the agent through these NATs, and libp2p relays carry no shares: share through a Beam server.',
  },
  BEAM_ERR_HOST_NOT_ALLOWED: {
    status: 403,
    message:
      'This local port answers only requests for localhost, 127.0.0.1 or [::1] (another name may be a DNS rebinding attack). Open it under one of those names, or allow the name with `beam connect --allow-host <name>`.',
  },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

/** An error with a stable code. `detail` adds what only this occurrence knows (a port, a name). */
export class BeamError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${ERRORS[code].message} (${detail})` : ERRORS[code].message, options);
    this.name = 'BeamError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.detail = detail;
  }
}

export function errorCodeOf(err: unknown): ErrorCode | undefined {
  if (err instanceof BeamError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return isErrorCode(code) ? code : undefined;
}
