/**
 * Beam's programmatic API: the same shares, servers and connections as the
 * CLI, as promises.
 *
 * ```ts
 * import { share } from 'beam-tunnel';
 * const s = await share({ target: 3000 });
 * console.log(s.url);
 * await s.close();
 * ```
 */
import { type Logger, pino } from 'pino';
import { type Connection, connect as connectApp } from './app/connect.js';
import { parseEngine, parseRelayMode, parseServerUrl } from './app/options.js';
import { BeamError } from './shared/errors.js';
import type { RelayMode } from './shared/signaling.js';
import type { EngineName } from './transport/engine.js';
import { loadEngine } from './transport/index.js';

export type { Connected, Connection, ConnectionEvents, ConnectionPath } from './app/connect.js';
export { type ServeOptions, type Server, serve } from './app/serve.js';
export { type Share, type ShareEvents, type ShareOptions, share } from './app/share.js';
export type { SessionInfo } from './peer-agent/agent.js';
export { BeamError, ERRORS, type ErrorCode } from './shared/errors.js';
/** A path between two peers (`direct`, `turn`, `relay`); a session's `path` may also be `gateway` (SessionPath). */
export type { PathKind, RequestPath, SessionPath } from './shared/paths.js';

const silent = (): Logger => pino({ level: 'silent' });

export interface ConnectOptions {
  /** The share's link, as `beam` printed it (`…#peer=…` verifies the agent). */
  link: string;
  /** Local port. Default 0: any free one (see `port` and `url` on the result). */
  port?: number;
  /** Local address to listen on. Default 127.0.0.1. */
  bind?: string;
  /** Default 'auto'. */
  relay?: RelayMode;
  /** A Beam server other than the one the link names. */
  server?: string;
  /** Default 'node-datachannel'. */
  engine?: EngineName;
  /** pino logger. Default: silent. */
  logger?: Logger;
  /** Host names an HTTP share's local port answers besides localhost, 127.0.0.1 and [::1] (`--allow-host`). Default none. */
  allowHosts?: string[];
}

/** Opens a share as a local port, as `beam connect` does; resolves once it listens, with its first path up. Emits 'path' when the path changes. */
export async function connect(options: ConnectOptions): Promise<Connection> {
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new BeamError('BEAM_ERR_BAD_OPTION', `port ${port} is not from 0 to 65535`);
  const engine = await loadEngine(parseEngine(options.engine ?? 'node-datachannel'));
  return connectApp(
    { engine, logger: options.logger ?? silent() },
    {
      link: options.link,
      port,
      bind: options.bind ?? '127.0.0.1',
      relay: parseRelayMode(options.relay ?? 'auto'),
      ...(options.server ? { server: parseServerUrl(options.server) } : {}),
      ...(options.allowHosts ? { allowHosts: options.allowHosts } : {}),
    },
  );
}
