/**
 * Where Beam keeps what a machine holds on to (its key, its peer ID, the
 * local CA, the names it holds on servers): `$BEAM_CONFIG_DIR`, else
 * `$XDG_CONFIG_HOME/beam`, else `~/.config/beam`. No libp2p here: a start
 * reads this before it knows whether it needs any.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** `$BEAM_CONFIG_DIR`, else `$XDG_CONFIG_HOME/beam`, else `~/.config/beam`. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BEAM_CONFIG_DIR) return env.BEAM_CONFIG_DIR;
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'beam');
}

/** The agent's key pair (libp2p protobuf), mode 0600. */
export const IDENTITY_FILE = 'identity.key';
/** The peer ID of IDENTITY_FILE as text, kept beside it so a start needs no libp2p to name itself. */
export const PEER_ID_FILE = 'identity.peer-id';
