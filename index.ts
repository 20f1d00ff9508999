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
import { type Connected, connect as connectCli } from './cli/connect.js';
import { parseEngine, parseRelayMode, parseServerUrl } from './cli/options.js';
import { startBeamServer } from './gateway/server.js';
import { DEFAULT_EMBEDDED_PORT } from './shared/constants.js';
import { BeamError } from './shared/errors.js';
import type { RelayMode } from './shared/signaling.js';
import { validateIceConfig } from './signaling/ice.js';
import type { EngineName } from './transport/engine.js';
import { loadEngine } from './transport/index.js';

export type { Connected } from './cli/connect.js';
export { type Share, type ShareEvents, type ShareOptions, share } from './cli/share.js';
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

/** Opens a share as a local port, as `beam connect` does; resolves once it listens. */
export async function connect(options: ConnectOptions): Promise<Connected> {
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new BeamError('BEAM_ERR_BAD_OPTION', `port ${port} is not from 0 to 65535`);
  const engine = await loadEngine(parseEngine(options.engine ?? 'node-datachannel'));
  return connectCli(
    { engine, logger: options.logger ?? silent(), out: { emit() {}, line() {} } },
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

export interface ServeOptions {
  /** Default 7070; 0 picks a free port. */
  port?: number;
  /** Address to bind. Default 0.0.0.0. */
  host?: string;
  /** Shares become `<name>.<domain>`. Default 'localhost'. */
  domain?: string;
  /** The server's public URL, e.g. https://beam.example.com. */
  publicUrl?: string;
  stun?: string[];
  turn?: string[];
  /** The TURN server's static-auth-secret (coturn use-auth-secret). */
  turnSecret?: string;
  /** Default 'node-datachannel'. */
  engine?: EngineName;
  /** pino logger. Default: silent. */
  logger?: Logger;
}

export interface Server {
  /** The server's own URL (what agents pass as `server`). */
  url: string;
  port: number;
  /** Stops accepting, lets requests in flight finish (bounded), then closes. */
  close(): Promise<void>;
}

/** Runs a Beam server (signaling, gateway, relay), as `beam serve` does. */
export async function serve(options: ServeOptions = {}): Promise<Server> {
  const domain = (options.domain ?? 'localhost').toLowerCase();
  if (!/^[a-z0-9.-]+$/.test(domain)) throw new BeamError('BEAM_ERR_BAD_OPTION', `domain "${options.domain}" is not a domain name`);
  if (options.publicUrl) parseServerUrl(options.publicUrl);
  const ice = validateIceConfig({ stun: options.stun ?? [], turn: options.turn ?? [], turnSecret: options.turnSecret });
  const engine = await loadEngine(parseEngine(options.engine ?? 'node-datachannel'));
  const server = await startBeamServer(
    { engine, logger: options.logger ?? silent() },
    { port: options.port ?? DEFAULT_EMBEDDED_PORT, host: options.host ?? '0.0.0.0', domain, publicUrl: options.publicUrl, ice },
  );
  const host = options.host && options.host !== '0.0.0.0' && options.host !== '::' ? options.host : '127.0.0.1';
  return {
    url: options.publicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${server.port}`,
    port: server.port,
    close: () => server.drain(),
  };
}
