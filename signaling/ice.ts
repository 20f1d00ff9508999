/**
 * The STUN and TURN servers the server hands both parties of each session.
 * TURN credentials are time-limited REST credentials, the scheme coturn's
 * `use-auth-secret` / `static-auth-secret` checks: username
 * `<expiry unix time>:beam-<random tag>` (one a session), password
 * base64(HMAC-SHA1(secret, username)).
 * A fresh pair per session, so none outlives TURN_CREDENTIAL_TTL_S.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { TURN_CREDENTIAL_TTL_S } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { IceServer } from '../shared/signaling.js';

export interface IceConfig {
  stun: string[];
  turn: string[];
  turnSecret?: string;
}

const ICE_URL = /^(stun|turn|turns):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?$/;

/** Checks a `--stun` / `--turn` URL; BEAM_ERR_BAD_OPTION says what a good one looks like. */
export function parseIceUrl(value: string, kind: 'stun' | 'turn'): string {
  const m = ICE_URL.exec(value);
  const scheme = m?.[1];
  const ok = m && (kind === 'stun' ? scheme === 'stun' && !m[4] : scheme === 'turn' || scheme === 'turns');
  if (!ok) {
    const example = kind === 'stun' ? 'stun:stun.example.com:3478' : 'turn:turn.example.com:3478?transport=udp';
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--${kind} "${value}" is not a ${kind.toUpperCase()} URL (e.g. ${example})`);
  }
  const port = m[3] ? Number(m[3].slice(1)) : 0;
  if (m[3] && (port < 1 || port > 65535)) throw new BeamError('BEAM_ERR_BAD_OPTION', `--${kind} "${value}": port out of range`);
  return value;
}

export function validateIceConfig(config: IceConfig): IceConfig {
  for (const u of config.stun) parseIceUrl(u, 'stun');
  for (const u of config.turn) parseIceUrl(u, 'turn');
  if (config.turn.length > 0 && !config.turnSecret) {
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--turn needs --turn-secret (the static-auth-secret of the TURN server)');
  }
  if (config.turnSecret !== undefined && config.turnSecret.length < 16) {
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--turn-secret must be at least 16 characters');
  }
  return config;
}

/**
 * TURN REST credentials valid until now + ttl: `<expiry>:<tag>`, the tag
 * random per call (one session's two peers). coturn's user-quota counts a
 * username's allocations: with one tag for everyone, every session whose
 * credentials were minted in the same second shared one quota, and the
 * thirteenth allocation among them was refused (486).
 */
export function turnCredentials(secret: string, nowMs = Date.now(), ttlS = TURN_CREDENTIAL_TTL_S): { username: string; credential: string } {
  const username = `${Math.floor(nowMs / 1000) + ttlS}:beam-${randomBytes(9).toString('base64url')}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return { username, credential };
}

/** The ICE servers for one session. */
export function iceServersFor(config: IceConfig, nowMs = Date.now()): IceServer[] {
  const servers: IceServer[] = config.stun.map((urls) => ({ urls }));
  if (config.turn.length > 0 && config.turnSecret) {
    const creds = turnCredentials(config.turnSecret, nowMs);
    for (const urls of config.turn) servers.push({ urls, ...creds });
  }
  return servers;
}
