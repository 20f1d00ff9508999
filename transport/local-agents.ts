/**
 * Which agents of this process serve which share on which server
 * (transport/local.ts): the server's gateway finds its in-memory path here.
 * Apart from the channel itself, so that whoever only asks (the session pool,
 * bundled into the browser page too) carries no channel code.
 */
import type { FrameChannel } from '../shared/mux.js';
import type { PathKind } from '../shared/paths.js';
import type { ShareKind } from '../shared/signaling.js';

/** What an agent hands the gateway for a new session: the gateway's end of the channel, and what the share carries. */
export interface LocalLink {
  channel: FrameChannel;
  kind: ShareKind;
  /** The path it is: 'local' in memory (the default), or a network backend's ('direct' for libp2p). */
  path?: PathKind;
}

export type LocalAccept = () => LocalLink;

const agents = new Map<string, LocalAccept>();

/** The key of a share on a server: the server's origin (scheme, host, port) and the name. */
function keyOf(server: string, share: string): string | undefined {
  try {
    return `${new URL(server).origin}\n${share.toLowerCase()}`;
  } catch {
    return undefined;
  }
}

/** An agent in this process serves `share` on `server`: the gateway there may reach it in memory. Returns the undo. */
export function serveLocally(server: string, share: string, accept: LocalAccept): () => void {
  const key = keyOf(server, share);
  if (key === undefined) return () => {};
  agents.set(key, accept);
  return () => {
    if (agents.get(key) === accept) agents.delete(key);
  };
}

/** The agent serving `share` on `server` in this process, if there is one. */
export function localAgent(server: string, share: string): LocalAccept | undefined {
  const key = keyOf(server, share);
  return key === undefined ? undefined : agents.get(key);
}
