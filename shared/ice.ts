/** ICE server lists: what an attempt meant to form a direct pair keeps. */
import type { IceServer } from './signaling.js';

/** The ICE servers without TURN: STUN only, for an attempt meant to form a direct pair. */
export function withoutTurn(servers: readonly IceServer[]): IceServer[] {
  return servers.filter((s) => !/^turns?:/i.test(s.urls));
}
