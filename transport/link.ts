/**
 * Links for `beam connect`: the share's URL with the agent's peer ID in the
 * fragment, `http://swift-otter-042.localhost:7070/#peer=12D3Koo...`. The
 * same link still opens in a browser (a fragment never leaves it), and
 * `beam connect` checks the agent's Noise handshake against that peer ID
 * rather than trusting the server's word.
 */
import type { PeerId } from '@libp2p/interface';
import { BeamError } from '../shared/errors.js';
import { parsePeerId } from './identity.js';

export function connectLink(url: string, peerId: string): string {
  const u = new URL(url);
  u.hash = `peer=${peerId}`;
  return u.href;
}

export interface ParsedLink {
  /** The Beam server, e.g. http://localhost:7070 */
  server: string;
  /** The share's URL without the fragment. */
  url: string;
  share: string;
  peer: PeerId | undefined;
}

/**
 * Parses a link. The share is the first label of the host; the server is the
 * rest (`<name>.<domain>` is served by the server at `<domain>`).
 */
export function parseLink(text: string): ParsedLink {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `"${text}" is not a Beam link (e.g. http://swift-otter-042.localhost:7070/#peer=...)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new BeamError('BEAM_ERR_BAD_OPTION', `a Beam link is http:// or https://, not ${u.protocol}`);
  const dot = u.hostname.indexOf('.');
  if (dot <= 0) throw new BeamError('BEAM_ERR_BAD_OPTION', `"${u.hostname}" names no share: a link looks like http://<name>.<domain>/`);
  const share = u.hostname.slice(0, dot);
  const server = new URL(u.href);
  server.hostname = u.hostname.slice(dot + 1);
  const peerText = new URLSearchParams(u.hash.slice(1)).get('peer');
  const plain = new URL(u.href);
  plain.hash = '';
  return { server: server.origin, url: plain.href, share, peer: peerText ? parsePeerId(peerText) : undefined };
}
