/**
 * The agent's verdict on a network backend's visitor (transport/backend.ts
 * verdict): its first frame after Noise. A GOAWAY refuses the visitor with
 * its code; any other frame lets it in and is handed on, in order, to
 * whoever reads the channel next; silence is a failed handshake.
 */
import { describe, expect, it } from 'vitest';
import type { BeamError } from '../shared/errors.js';
import { encodeMessage, FrameType } from '../shared/frames.js';
import { Mux } from '../shared/mux.js';
import { verdict } from '../transport/backend.js';
import { localChannelPair } from '../transport/local.js';

describe('verdict', () => {
  it('a GOAWAY refuses the visitor with its code and closes the channel', async () => {
    const [visitor, agent] = localChannelPair();
    let closed = false;
    visitor.onClose(() => {
      closed = true;
    });
    new Mux(agent, { role: 'responder', ping: false }).goAway('BEAM_ERR_MAX_VISITORS');
    const err = (await verdict(visitor, 1_000).catch((e: unknown) => e)) as BeamError;
    expect(err.code).toBe('BEAM_ERR_MAX_VISITORS');
    expect(closed).toBe(true);
  });

  it('any other first frame lets the visitor in: it and what follows reach the multiplexer, in order', async () => {
    const [visitor, agent] = localChannelPair();
    const far = new Mux(agent, { role: 'responder' });
    const channel = await verdict(visitor, 1_000);
    // The agent's first PING was taken as the verdict; the visitor's multiplexer still answers it.
    const near = new Mux(channel, { role: 'initiator', ping: false });
    expect(await far.probe(1_000)).toBe(true);
    const accepted = new Promise<number>((resolve) =>
      far.once('stream', (s) => {
        s.on('error', () => {});
        resolve(s.id);
      }),
    );
    near.openStream(1).on('error', () => {});
    expect(await accepted).toBe(1);
    near.close();
    far.close();
  });

  it('an agent that says nothing is a failed handshake; a first message that is no frame is refused with its code', async () => {
    const [silent] = localChannelPair();
    expect(((await verdict(silent, 50).catch((e: unknown) => e)) as BeamError).code).toBe('BEAM_ERR_HANDSHAKE_FAILED');
    const [visitor, agent] = localChannelPair();
    agent.send(Uint8Array.of(99, 0, 0, 0, 0, 0, 0, 0, 0));
    expect(((await verdict(visitor, 1_000).catch((e: unknown) => e)) as BeamError).code).toBe('BEAM_ERR_FRAME_UNKNOWN');
    // A GOAWAY whose reason is no Beam code still refuses, as the peer being gone.
    const [v2, a2] = localChannelPair();
    a2.send(encodeMessage([{ type: FrameType.GOAWAY, streamId: 0, reason: 'NOT_A_BEAM_CODE' }]));
    expect(((await verdict(v2, 1_000).catch((e: unknown) => e)) as BeamError).code).toBe('BEAM_ERR_PEER_GONE');
  });
});
