/**
 * Links for `beam connect`: the share's URL with the agent's peer ID (and a
 * private share's secret) in the fragment,
 * `http://swift-otter-042.localhost:7070/#peer=12D3Koo...&secret=...`. The
 * same link still opens in a browser (a fragment never leaves it), and
 * `beam connect` checks the agent's Noise handshake against that peer ID
 * rather than trusting the server's word.
 */

import { isIP } from 'node:net';
import type { PeerId } from '@libp2p/interface';
import { SECRET_PARAM } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { validateName } from '../shared/names.js';
import { parsePeerId } from './identity.js';

export { connectLink } from './link-text.js';

export interface ParsedLink {
  /** The Beam server, e.g. http://localhost:7070 */
  server: string;
  /** The share's URL without the fragment. */
  url: string;
  share: string;
  peer: PeerId | undefined;
  /** A private share's secret (`#secret=`), proven in the handshake. */
  secret: string | undefined;
}

/**
 * Parses a link. A `#share=<name>` names the share and leaves the host as the
 * server's, as it is. Otherwise the share is the first label of the host and
 * the server is the rest (`<name>.<domain>` is served by the server at
 * `<domain>`); a host that is an IP address has no labels to split, and is
 * refused with what to do instead.
 */
export function parseLink(text: string): ParsedLink {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `"${text}" is not a Beam link (e.g. http://swift-otter-042.localhost:7070/#peer=...)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new BeamError('BEAM_ERR_BAD_OPTION', `a Beam link is http:// or https://, not ${u.protocol}`);
  const fragment = new URLSearchParams(u.hash.slice(1));
  const named = fragment.get('share');
  let share: string;
  const server = new URL(u.href);
  if (named !== null) {
    share = validateName(named);
  } else {
    if (isIP(u.hostname.replace(/^\[|\]$/g, '')) !== 0) {
      throw new BeamError(
        'BEAM_ERR_BAD_OPTION',
        `${u.host} is an IP address, which names no share: use the share's own link (http://<name>.<domain>/), or add the name as ${u.origin}/#share=<name>`,
      );
    }
    const dot = u.hostname.indexOf('.');
    if (dot <= 0) throw new BeamError('BEAM_ERR_BAD_OPTION', `"${u.hostname}" names no share: a link looks like http://<name>.<domain>/`);
    share = u.hostname.slice(0, dot);
    server.hostname = u.hostname.slice(dot + 1);
  }
  const peerText = fragment.get('peer');
  // A browser link's ?beam_secret= works too.
  const secret = fragment.get('secret') ?? u.searchParams.get(SECRET_PARAM) ?? undefined;
  const plain = new URL(u.href);
  plain.hash = '';
  plain.searchParams.delete(SECRET_PARAM);
  return { server: server.origin, url: plain.href, share, peer: peerText ? parsePeerId(peerText) : undefined, secret };
}
