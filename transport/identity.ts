/**
 * Peer identity: an Ed25519 libp2p key pair. The agent keeps one for good,
 * under the user's config directory (mode 0600), so the peer ID in its
 * `beam connect` links stays valid across runs; visitors use a fresh one.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { BeamError } from '../shared/errors.js';
import { configDir, IDENTITY_FILE } from './config-dir.js';

export interface Identity {
  privateKey: PrivateKey;
  peerId: PeerId;
}

export { configDir, IDENTITY_FILE, PEER_ID_FILE } from './config-dir.js';

export async function ephemeralIdentity(): Promise<Identity> {
  const privateKey = await generateKeyPair('Ed25519');
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey) };
}

/**
 * Loads the key from `dir`, creating it (and the directory, mode 0700) on
 * first use. A key file readable by others is tightened to 0600; one that
 * does not parse is an error, never silently replaced: links already handed
 * out name the old identity.
 */
export async function loadIdentity(dir: string = configDir()): Promise<Identity> {
  const file = join(dir, IDENTITY_FILE);
  let bytes: Buffer | undefined;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw identityError(file, err);
  }
  if (bytes) {
    try {
      const privateKey = privateKeyFromProtobuf(bytes);
      if ((await stat(file)).mode & 0o077) await chmod(file, 0o600);
      return { privateKey, peerId: peerIdFromPrivateKey(privateKey) };
    } catch (err) {
      throw identityError(file, err);
    }
  }
  const identity = await ephemeralIdentity();
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // 'wx': two agents starting at once must not overwrite each other's key.
    await writeFile(file, privateKeyToProtobuf(identity.privateKey), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadIdentity(dir);
    throw identityError(file, err);
  }
  return identity;
}

function identityError(file: string, err: unknown): BeamError {
  return new BeamError(
    'BEAM_ERR_IDENTITY',
    `${file}: ${(err as Error).message}. Fix or remove the file (links that name the old peer ID stop working), or point BEAM_CONFIG_DIR elsewhere`,
  );
}

/** Parses a peer ID from a link or flag; BEAM_ERR_BAD_REQUEST when it is not one. */
export function parsePeerId(text: string): PeerId {
  try {
    return peerIdFromString(text);
  } catch {
    throw new BeamError('BEAM_ERR_BAD_REQUEST', `"${text}" is not a peer ID`);
  }
}
