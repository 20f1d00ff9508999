/**
 * A peer connection that refuses a data channel. libdatachannel throws from
 * createDataChannel when its SCTP transport was reset under it ("Sending
 * failed, errno=104"); in CI that once took a whole `beam serve` down, as an
 * unhandled rejection in its gateway's session. Here the visitor's real
 * node-datachannel connection is made to refuse the channel its streams open
 * on: the attempt fails with a clear error, the process goes on, and with the
 * relay allowed the session comes up there.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAM_CHANNEL_LABEL } from '../../shared/constants.js';
import type { BeamError } from '../../shared/errors.js';
import type { RelayMode } from '../../shared/signaling.js';
import type { WebRtcEngine } from '../../transport/engine.js';
import { ephemeralIdentity } from '../../transport/identity.js';
import { loadEngine } from '../../transport/index.js';
import { SessionPool } from '../../transport/session-pool.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';

let server: ServerHandle;
let agent: AgentHandle;
let origin: Origin;
const rejections: unknown[] = [];
const onRejection = (reason: unknown): void => {
  rejections.push(reason);
};

beforeAll(async () => {
  process.on('unhandledRejection', onRejection);
  origin = await startOrigin();
  server = await startServer();
  agent = await startAgent(origin.port, server, ['--no-inspect']);
});
afterAll(async () => {
  process.off('unhandledRejection', onRejection);
  await agent?.proc.kill();
  await server?.proc.kill();
  await origin?.close();
});

/** node-datachannel, but each peer connection refuses the stream channel as a reset one does. */
async function refusingEngine(): Promise<{ engine: WebRtcEngine; refused: () => number }> {
  const real = await loadEngine('node-datachannel');
  let refused = 0;
  const engine: WebRtcEngine = {
    name: real.name,
    createPeer(options) {
      const peer = real.createPeer(options);
      const create = peer.createDataChannel.bind(peer);
      peer.createDataChannel = (label, init) => {
        if (label !== STREAM_CHANNEL_LABEL) return create(label, init);
        refused++;
        throw new Error('libdatachannel error while creating datachannel: Sending failed, errno=104');
      };
      return peer;
    },
  };
  return { engine, refused: () => refused };
}

async function visit(relay: RelayMode): Promise<{ outcome: Promise<unknown>; refused: () => number; close(): void }> {
  const { engine, refused } = await refusingEngine();
  const pool = new SessionPool(
    { engine, logger: pino({ level: 'silent' }), identity: await ephemeralIdentity() },
    { server: server.url, reconnect: 'none', session: { relay } },
  );
  await pool.ready();
  const session = pool.open(agent.name);
  return { outcome: session.ready.then(() => session.path), refused, close: () => pool.close() };
}

describe('a peer connection that refuses a data channel', () => {
  it('fails the direct attempt with BEAM_ERR_AGENT_UNREACHABLE naming it, without an unhandled rejection', async () => {
    const v = await visit('never');
    try {
      const err = (await v.outcome.then(
        () => undefined,
        (e: unknown) => e,
      )) as BeamError;
      expect(err.code).toBe('BEAM_ERR_AGENT_UNREACHABLE');
      expect(err.message).toContain('channel refused: libdatachannel error while creating datachannel');
      expect(v.refused()).toBeGreaterThan(0);
      expect(rejections).toEqual([]);
    } finally {
      v.close();
    }
  });

  it('with the relay allowed, the session is up on the relay', async () => {
    const v = await visit('auto');
    try {
      expect(await v.outcome).toBe('relay');
      expect(rejections).toEqual([]);
    } finally {
      v.close();
    }
  });
});
