/** Decoders for command-line values: each returns a typed value or throws BEAM_ERR_BAD_OPTION saying what to type instead. */
import { parseBasicCredentials } from '../peer-agent/access.js';
import { BeamError } from '../shared/errors.js';
import { RELAY_MODES, type RelayMode } from '../shared/signaling.js';
import { ENGINE_NAMES, type EngineName } from '../transport/engine.js';

export interface Target {
  host: string;
  port: number;
  /** Given as a URL: `https://localhost:8443` is an https origin. */
  scheme?: 'http' | 'https';
}

export function parsePort(value: string, what = 'port'): number {
  if (!/^\d{1,5}$/.test(value)) throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} "${value}" is not a number from 1 to 65535`);
  const port = Number(value);
  if (port < 1 || port > 65535) throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} ${port} is out of range 1-65535`);
  return port;
}

/** `3000`, `host:3000`, `[::1]:3000`, or an origin URL: `http://host:3000`, `https://localhost:8443` (port 443 by default). */
export function parseTarget(value: string): Target {
  if (/^\d+$/.test(value)) return { host: 'localhost', port: parsePort(value) };
  const scheme = /^(https?):\/\//i.exec(value)?.[1]?.toLowerCase() as 'http' | 'https' | undefined;
  if (scheme) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new BeamError('BEAM_ERR_BAD_OPTION', `"${value}" is not a URL (try "https://localhost:8443")`);
    }
    if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username || url.password)
      throw new BeamError('BEAM_ERR_BAD_OPTION', `"${value}": give the origin only (scheme, host and port), with no path, query or credentials`);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    return { host, port: url.port ? parsePort(url.port) : scheme === 'https' ? 443 : 80, scheme };
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d+)$/.exec(value);
  if (!m) throw new BeamError('BEAM_ERR_BAD_OPTION', `"${value}" is not a port or host:port (try "beam 3000" or "beam http 127.0.0.1:8080")`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port: parsePort(m[2] as string) };
}

export function parseServerUrl(value: string, what = '--server'): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} "${value}" is not a URL (e.g. https://beam.example.com)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} must be http:// or https://, not ${url.protocol}`);
  }
  return url.origin;
}

export function parseEngine(value: string): EngineName {
  if ((ENGINE_NAMES as readonly string[]).includes(value)) return value as EngineName;
  throw new BeamError('BEAM_ERR_BAD_OPTION', `--engine must be one of ${ENGINE_NAMES.join(', ')}`);
}

export function parseHostHeader(value: string): 'rewrite' | 'preserve' {
  if (value === 'rewrite' || value === 'preserve') return value;
  throw new BeamError('BEAM_ERR_BAD_OPTION', '--host-header must be "rewrite" or "preserve"');
}

/** `beam serve --browser-first-load`: where a new visitor's browser shows the app's first document. */
export function parseBrowserFirstLoad(value: string, flag = '--browser-first-load'): 'frame' | 'top' {
  if (value === 'frame' || value === 'top') return value;
  throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} must be "frame" or "top", not "${value}"`);
}

export function parseMs(value: string, what: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1) throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} must be a whole number of milliseconds`);
  return Number(value);
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/** A duration: `90s`, `30m`, `12h`, `7d` (a whole number and a unit), in milliseconds. */
export function parseDuration(value: string, what: string): number {
  const m = /^(\d{1,6})(s|m|h|d)$/.exec(value.trim());
  if (!m || Number(m[1]) < 1) throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} "${value}" should look like 30m, 12h or 7d (or 90s)`);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

export function parseAppProtocol(value: string): 'http1' | 'http2' {
  if (value === 'http1' || value === 'http2') return value;
  throw new BeamError('BEAM_ERR_BAD_OPTION', '--app-protocol must be "http1" or "http2" (h2c on http://, h2 by ALPN on https://)');
}

export function parseLogLevel(value: string): string {
  if (LEVELS.includes(value)) return value;
  throw new BeamError('BEAM_ERR_BAD_OPTION', `--log-level must be one of ${LEVELS.join(', ')}`);
}

export function parseRelayMode(value: string, flag = '--relay'): RelayMode {
  if ((RELAY_MODES as readonly string[]).includes(value)) return value as RelayMode;
  throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} must be one of ${RELAY_MODES.join(', ')}, not "${value}"`);
}

/** `--auth user:pass`. */
export const parseBasicAuth = parseBasicCredentials;

/** A whole number from 1, e.g. --max-visitors. */
export function parseCount(value: string, what: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1) throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} must be a whole number from 1 (got "${value}")`);
  return Number(value);
}

/** `--redis redis://host:port[/db]` (or rediss:// for TLS). */
export function parseRedisUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--redis "${value}" is not a URL (e.g. redis://127.0.0.1:6379)`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--redis must be redis:// or rediss://, not ${url.protocol}`);
  return url.href;
}

/** `--inspect <port>` (0: any free port), `--no-inspect` (false), or neither: `fallback`. */
export function parseInspect(flag: string | boolean | undefined, fallback: boolean | number): boolean | number {
  if (flag === undefined || flag === true) return fallback;
  if (flag === false) return false;
  return flag === '0' ? 0 : parsePort(flag, '--inspect');
}
