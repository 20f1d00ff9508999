import { LIBP2P_LINK_PROTOCOL } from '../shared/constants.js';

/** Whether `text` is a libp2p share's link (`beam+libp2p://`, transport/libp2p.ts parses them). */
export function isLibp2pLink(text: string): boolean {
  return text.startsWith(`${LIBP2P_LINK_PROTOCOL}//`);
}

/** A `beam connect` link as text (transport/link.ts parses them): the share's URL, the agent's peer ID and a private share's secret in the fragment. No libp2p. */
export function connectLink(url: string, peerId: string | undefined, secret?: string): string {
  const u = new URL(url);
  u.hash = new URLSearchParams({ ...(peerId !== undefined ? { peer: peerId } : {}), ...(secret !== undefined ? { secret } : {}) }).toString();
  return u.href;
}
