/**
 * The paths a session's bytes take, in one vocabulary for every floor:
 *
 *   local   in memory: the server's gateway and the agent run in one process
 *           (the embedded default), so nothing is between them (transport/local.ts)
 *   direct  WebRTC between the two peers (host or server-reflexive candidates)
 *   turn    WebRTC through a TURN server
 *   relay   the Beam server's relay: two WebSockets spliced, Noise inside
 *
 * A request seen at the agent also says how it came: over one of these from
 * a peer-to-peer visitor, from the server's `gateway` (itself over one of
 * them), or as the inspector's `replay`.
 */

export const PATH_KINDS = ['local', 'direct', 'turn', 'relay'] as const;
/** A path between two peers of a session. */
export type PathKind = (typeof PATH_KINDS)[number];

/** Best first: new streams take the first path of this order that is up. */
export const PATH_ORDER: readonly PathKind[] = PATH_KINDS;

/**
 * Best first for a link whose relay removes no server from the path: the
 * server's own gateway meets its agents at the relay in its own process, so
 * WebRTC would reach the same machine, over UDP with DTLS and SCTP in user
 * space (a fraction of TCP's throughput). The relay carries the streams;
 * direct stands by, and takes new streams only once the relay is gone (the
 * agent lost its connection to the server).
 */
export const RELAY_PREFERRED_ORDER: readonly PathKind[] = ['local', 'relay', 'direct', 'turn'];

/** The order of a session's paths: RELAY_PREFERRED_ORDER when its visitor asked for it, else PATH_ORDER. */
export function pathOrder(relayPreferred: boolean | undefined): readonly PathKind[] {
  return relayPreferred ? RELAY_PREFERRED_ORDER : PATH_ORDER;
}

/** How a request reached the agent: a peer's path, the server's gateway, or the inspector's replay. */
export type RequestPath = PathKind | 'gateway' | 'replay';

/** What a session reports as its path: a peer-to-peer visitor's, or 'gateway' for the server's gateway. */
export type SessionPath = PathKind | 'gateway';

/** The best of the paths `has` says are up, in `order`, or undefined when none is. */
export function bestPath(has: (kind: PathKind) => boolean, order: readonly PathKind[] = PATH_ORDER): PathKind | undefined {
  return order.find(has);
}
