/** shared/decode.ts and wireError: one decoder for every boundary, and bugs told apart from bad messages. */

import * as v from 'valibot';
import { describe, expect, it } from 'vitest';
import { decode, describeIssue } from '../shared/decode.js';
import { BeamError } from '../shared/errors.js';
import { SessionSignalSchema, wireError } from '../shared/signaling.js';

describe('decode', () => {
  it('returns the typed value, and drops keys the schema does not name', () => {
    expect(decode(SessionSignalSchema, { sessionId: 'abcdefgh', signal: { type: 'relay' }, extra: 1 }, 'session:signal')).toEqual({
      sessionId: 'abcdefgh',
      signal: { type: 'relay' },
    });
  });

  it('throws BEAM_ERR_BAD_MESSAGE naming the event and the field', () => {
    expect(() => decode(SessionSignalSchema, { sessionId: 'abcdefgh', signal: { type: 'offer', sdp: '' } }, 'session:signal')).toThrow(
      expect.objectContaining({ code: 'BEAM_ERR_BAD_MESSAGE', detail: expect.stringMatching(/^session:signal at signal\.sdp: /) }),
    );
  });

  it('takes another code where the boundary has its own (beam.yml: BEAM_ERR_CONFIG)', () => {
    expect(() => decode(v.object({ a: v.number() }), { a: 'x' }, 'beam.yml', 'BEAM_ERR_CONFIG')).toThrow(expect.objectContaining({ code: 'BEAM_ERR_CONFIG' }));
  });

  it('names an unknown key as such, under its parent', () => {
    const parsed = v.safeParse(v.strictObject({ shares: v.strictObject({ web: v.number() }) }), { shares: { web: 1, nmae: 2 } });
    expect(parsed.success).toBe(false);
    expect(describeIssue(parsed.issues?.[0])).toEqual({ where: 'shares', message: 'unknown key "nmae"' });
  });
});

describe('wireError', () => {
  it('passes a BeamError on as it is', () => {
    expect(wireError(new BeamError('BEAM_ERR_NAME_TAKEN', '"x"'))).toMatchObject({ code: 'BEAM_ERR_NAME_TAKEN', detail: '"x"' });
  });

  it("reports anything else as BEAM_ERR_INTERNAL (a bug of ours), never as the sender's bad message", () => {
    expect(wireError(new TypeError('undefined is not a function'))).toEqual({ code: 'BEAM_ERR_INTERNAL', message: expect.stringContaining('bug') });
  });
});
