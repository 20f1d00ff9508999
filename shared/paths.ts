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

/** How a request reached the agent: a peer's path, the server's gateway, or the inspector's replay. */
export type RequestPath = PathKind | 'gateway' | 'replay';

/** What a session reports as its path: a peer-to-peer visitor's, or 'gateway' for the server's gateway. */
export type SessionPath = PathKind | 'gateway';

/** The best of the paths `has` says are up, or undefined when none is. */
export function bestPath(has: (kind: PathKind) => boolean): PathKind | undefined {
  return PATH_ORDER.find(has);
}
