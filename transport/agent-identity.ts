/**
 * The agent's identity as a start needs it: its peer ID as text from
 * PEER_ID_FILE, with libp2p (a hundred and eighty files) loaded only when a
 * Noise handshake first needs the key pair. The embedded default serves its
 * gateway in memory, with no Noise at all.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BeamError } from '../shared/errors.js';
import { configDir, IDENTITY_FILE, PEER_ID_FILE } from './config-dir.js';
import type { Identity } from './identity.js';

/**
 * An agent's identity as a start needs it: the peer ID as text (for
 * signaling and the link) at once, the key pair (and libp2p with it) when a
 * Noise handshake first needs it.
 */
export interface AgentIdentity {
  readonly peerIdText: string;
  load(): Promise<Identity>;
}

const PEER_ID_TEXT = /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/;

/**
 * The agent's identity from `dir`: from PEER_ID_FILE when it is there and no
 * older than the key (the key loads later, and must match it), else from the
 * key itself (loadIdentity), writing PEER_ID_FILE for the next start.
 */
export async function loadAgentIdentity(dir: string = configDir()): Promise<AgentIdentity> {
  const keyFile = join(dir, IDENTITY_FILE);
  const idFile = join(dir, PEER_ID_FILE);
  const [key, cached] = await Promise.all([stat(keyFile).catch(() => undefined), stat(idFile).catch(() => undefined)]);
  if (key && cached && cached.mtimeMs >= key.mtimeMs) {
    const text = (await readFile(idFile, 'utf8').catch(() => '')).trim();
    if (PEER_ID_TEXT.test(text)) {
      let loading: Promise<Identity> | undefined;
      return {
        peerIdText: text,
        load: () => {
          loading ??= import('./identity.js')
            .then(({ loadIdentity }) => loadIdentity(dir))
            .then((identity) => {
              if (identity.peerId.toString() !== text) {
                throw new BeamError(
                  'BEAM_ERR_IDENTITY',
                  `${idFile} names ${text}, but ${keyFile} is ${identity.peerId.toString()}: remove ${idFile} and start again`,
                );
              }
              return identity;
            });
          return loading;
        },
      };
    }
  }
  const identity = await (await import('./identity.js')).loadIdentity(dir);
  const text = identity.peerId.toString();
  await writeFile(idFile, `${text}\n`, { mode: 0o600 }).catch(() => {
    // No cache this time: the next start loads the key again.
  });
  return { peerIdText: text, load: () => Promise.resolve(identity) };
}
