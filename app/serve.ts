/**
 * `beam serve` as a library call: a Beam server (signaling, gateway, relay)
 * in this process, with the options a program needs; the CLI's own flags
 * (TLS, Redis, tokens, limits) are `beam serve`'s.
 */
import { type Logger, pino } from 'pino';
import { startBeamServer } from '../gateway/server.js';
import { DEFAULT_EMBEDDED_PORT } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { RelayMode } from '../shared/signaling.js';
import { validateIceConfig } from '../signaling/ice.js';
import type { EngineName } from '../transport/engine.js';
import { loadEngine } from '../transport/index.js';
import { parseBrowserFirstLoad, parseEngine, parseRelayMode, parseServerUrl } from './options.js';

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
  /** How the gateway reaches agents, as `beam serve --gateway-relay`: 'auto' (default), 'always', 'never'. */
  gatewayRelay?: RelayMode;
  /** Where a new visitor's browser shows the app's first document, as `beam serve --browser-first-load`: 'frame' (default) or 'top'. */
  browserFirstLoad?: 'frame' | 'top';
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
    { engine, logger: options.logger ?? pino({ level: 'silent' }) },
    {
      port: options.port ?? DEFAULT_EMBEDDED_PORT,
      host: options.host ?? '0.0.0.0',
      domain,
      publicUrl: options.publicUrl,
      ice,
      gatewayRelay: parseRelayMode(options.gatewayRelay ?? 'auto', 'gatewayRelay'),
      browserFirstLoad: parseBrowserFirstLoad(options.browserFirstLoad ?? 'frame', 'browserFirstLoad'),
    },
  );
  const host = options.host && options.host !== '0.0.0.0' && options.host !== '::' ? options.host : '127.0.0.1';
  return {
    url: options.publicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${server.port}`,
    port: server.port,
    close: () => server.drain(),
  };
}
