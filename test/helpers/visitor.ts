/**
 * A visitor that reaches an agent without the gateway: signaling as a plain
 * (cli) visitor and a SessionPool, the same module the gateway, `beam
 * connect` and the browser page use, so every path (direct, relay) can be driven from a test.
 */

import type { PeerId } from '@libp2p/interface';
import pino from 'pino';
import type { RelayMode } from '../../shared/signaling.js';
import { ephemeralIdentity } from '../../transport/identity.js';
import { loadEngine } from '../../transport/index.js';
import type { PathInfo, VisitorSession } from '../../transport/session.js';
import { SessionPool } from '../../transport/session-pool.js';

export interface DirectVisitor {
  session: VisitorSession;
  /** Every 'path' event, in order. */
  paths: PathInfo[];
  close(): void;
}

export async function directVisitor(
  serverUrl: string,
  share: string,
  options: { relay?: RelayMode; expectPeer?: PeerId; directTimeoutMs?: number } = {},
): Promise<DirectVisitor> {
  const pool = new SessionPool(
    { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }), identity: await ephemeralIdentity() },
    {
      server: serverUrl,
      reconnect: 'none',
      session: { relay: options.relay ?? 'auto', expectPeer: options.expectPeer, directTimeoutMs: options.directTimeoutMs },
    },
  );
  await pool.ready();
  const session = pool.open(share);
  const paths: PathInfo[] = [];
  session.on('path', (p) => paths.push(p));
  try {
    await session.ready;
  } catch (err) {
    pool.close();
    throw err;
  }
  return {
    session,
    paths,
    close() {
      pool.close();
    },
  };
}
