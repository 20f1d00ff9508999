/**
 * Property-based tests (fast-check) over every decoder that takes bytes or
 * values from outside: signaling events, HTTP heads, the relay's secured
 * frame stream into the multiplexer, links, beam.yml and token files.
 * Whatever arrives, a decoder returns a typed value or throws a BeamError
 * with a code; it never crashes and never throws anything untyped.
 */
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../cli/config.js';
import { FRAME_HEADER_BYTES } from '../shared/constants.js';
import { BeamError, isErrorCode } from '../shared/errors.js';
import { decodeRequestHead, decodeResponseHead, readHead } from '../shared/http-head.js';
import { Mux } from '../shared/mux.js';
import { decode, SessionClosedSchema, SessionSignalSchema } from '../shared/signaling.js';
import {
  HandshakeSchema,
  IncomingSessionSchema,
  OpenSessionRequestSchema,
  RegisterRequestSchema,
  SessionCloseSchema,
  SessionRefSchema,
} from '../shared/signaling-requests.js';
import { AgentTokens } from '../signaling/tokens.js';
import { parseLink } from '../transport/link.js';
import { type Secured, SecureFrameChannel } from '../transport/secure.js';

/** Runs `fn`; undefined if it returned, the code if it threw a BeamError, and a failure otherwise. */
function outcome(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof BeamError && isErrorCode(err.code)) return err.code;
    throw new Error(`untyped error: ${String(err)}`, { cause: err });
  }
}

/** Values shaped like signaling events, with every field a stranger may choose. */
const eventish = fc.oneof(
  fc.anything(),
  fc.record(
    {
      protocol: fc.oneof(fc.constant(1), fc.anything()),
      role: fc.oneof(fc.constantFrom('agent', 'visitor'), fc.anything()),
      peerId: fc.oneof(fc.string(), fc.anything()),
      token: fc.oneof(fc.string({ maxLength: 300 }), fc.anything()),
      sessionId: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{8,64}$/), fc.anything()),
      share: fc.oneof(fc.string({ maxLength: 80 }), fc.anything()),
      name: fc.oneof(fc.string({ maxLength: 80 }), fc.anything()),
      code: fc.oneof(fc.constantFrom('BEAM_ERR_PEER_GONE', 'BEAM_ERR_MAX_VISITORS', 'nope'), fc.anything()),
      signal: fc.oneof(
        fc.record(
          { type: fc.constantFrom('offer', 'answer', 'candidate', 'relay'), sdp: fc.string(), candidate: fc.string(), mid: fc.string() },
          { requiredKeys: ['type'] },
        ),
        fc.anything(),
      ),
      visitor: fc.oneof(fc.record({ kind: fc.constantFrom('gateway', 'cli', 'browser'), address: fc.string() }), fc.anything()),
      iceServers: fc.oneof(fc.array(fc.record({ urls: fc.string() })), fc.anything()),
    },
    { requiredKeys: [] },
  ),
);

describe('signaling event decoders', () => {
  const schemas: Record<string, import('../shared/decode.js').Schema<unknown>> = {
    handshake: HandshakeSchema,
    'share:register': RegisterRequestSchema,
    'session:open': OpenSessionRequestSchema,
    'session:signal': SessionSignalSchema,
    'session:close': SessionCloseSchema,
    'session:ref': SessionRefSchema,
    'session:incoming': IncomingSessionSchema,
    'session:closed': SessionClosedSchema,
  };
  for (const [event, schema] of Object.entries(schemas)) {
    it(`${event}: any value decodes or is BEAM_ERR_BAD_MESSAGE`, () => {
      fc.assert(
        fc.property(eventish, (value) => {
          const code = outcome(() => decode(schema, value, event));
          return code === undefined || code === 'BEAM_ERR_BAD_MESSAGE';
        }),
        { numRuns: 2000 },
      );
    });
  }
});

describe('HTTP head decoders', () => {
  const jsonBytes = fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v)));
  const headish = fc
    .record(
      {
        method: fc.oneof(fc.constantFrom('GET', 'POST'), fc.string()),
        target: fc.oneof(fc.constant('/'), fc.string()),
        headers: fc.oneof(fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 8 }), fc.anything()),
        upgrade: fc.oneof(fc.boolean(), fc.anything()),
        body: fc.oneof(fc.boolean(), fc.anything()),
        kind: fc.constantFrom('response', 'error', 'x'),
        status: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.anything()),
        code: fc.oneof(fc.constant('BEAM_ERR_PEER_GONE'), fc.string()),
      },
      { requiredKeys: [] },
    )
    .map((v) => Buffer.from(JSON.stringify(v)));
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b)),
    jsonBytes,
    headish,
  );

  it('a request head: any bytes decode or are BEAM_ERR_BAD_MESSAGE', () => {
    fc.assert(
      fc.property(input, (bytes) => [undefined, 'BEAM_ERR_BAD_MESSAGE'].includes(outcome(() => decodeRequestHead(bytes)))),
      { numRuns: 3000 },
    );
  });

  it('a response head: any bytes decode or are BEAM_ERR_BAD_MESSAGE', () => {
    fc.assert(
      fc.property(input, (bytes) => [undefined, 'BEAM_ERR_BAD_MESSAGE'].includes(outcome(() => decodeResponseHead(bytes)))),
      { numRuns: 3000 },
    );
  });

  it('readHead: any byte stream, in any chunking, yields a head or a coded error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), async (chunks) => {
        const stream = new PassThrough();
        const head = readHead(stream, 128);
        for (const c of chunks) stream.write(Buffer.from(c));
        stream.end();
        stream.resume();
        try {
          const bytes = await head;
          expect(bytes.byteLength).toBeLessThanOrEqual(128);
        } catch (err) {
          expect(err).toBeInstanceOf(BeamError);
          expect(['BEAM_ERR_HEAD_TOO_LARGE', 'BEAM_ERR_BAD_MESSAGE', 'BEAM_ERR_PEER_GONE']).toContain((err as BeamError).code);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

/** A secured stream (what Noise hands over on the relay path) whose other end is a hostile peer. */
function hostileSecured(): { secured: Secured; deliver(bytes: Uint8Array): void } {
  const stream = new EventTarget() as EventTarget & { send(b: Uint8Array): boolean; close(): Promise<void>; writeBufferLength: number };
  stream.send = () => true;
  stream.close = async () => {
    stream.dispatchEvent(new Event('close'));
  };
  stream.writeBufferLength = 0;
  const pipe = { send: () => true, bufferedAmount: () => 0, onDrain() {}, onMessage() {}, onClose() {}, close() {} };
  return {
    secured: { stream, pipe, remotePeer: undefined } as unknown as Secured,
    deliver(bytes) {
      const event = new Event('message') as Event & { data: Uint8Array };
      event.data = bytes;
      stream.dispatchEvent(event);
    },
  };
}

describe('relay frames: the secured byte stream into the multiplexer', () => {
  /** Frame-shaped bytes: a real header with any type, stream id and length, and a payload that may or may not match it. */
  const frameish = fc
    .tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 64 }), fc.boolean())
    .map(([type, id, payload, honest]) => {
      const header = Buffer.alloc(FRAME_HEADER_BYTES);
      header.writeUInt8(type, 0);
      header.writeUInt32BE(id, 1);
      header.writeUInt32BE(honest ? payload.byteLength : id % 70_000, 5);
      return Buffer.concat([header, payload]);
    });
  const bytes = fc.oneof(fc.uint8Array({ maxLength: 128 }), frameish);

  it('any bytes, in any chunking, end as streams or a coded close; nothing throws', () => {
    fc.assert(
      fc.property(fc.array(bytes, { maxLength: 12 }), (chunks) => {
        const { secured, deliver } = hostileSecured();
        const mux = new Mux(new SecureFrameChannel(secured), { role: 'responder', ping: false });
        let closedWith: string | undefined | null = null;
        mux.on('close', (code) => (closedWith = code));
        mux.on('stream', (s) => s.on('error', () => {}));
        for (const c of chunks) deliver(c);
        mux.close('BEAM_ERR_PEER_GONE');
        return closedWith === undefined || (typeof closedWith === 'string' && isErrorCode(closedWith));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('what users type or paste', () => {
  it('a link: any text parses or is a coded error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.webUrl({ withFragments: true, withQueryParameters: true })), (text) => {
        const code = outcome(() => parseLink(text));
        return code === undefined || code.startsWith('BEAM_ERR_');
      }),
      { numRuns: 2000 },
    );
  });

  it('beam.yml: any text is a config or BEAM_ERR_CONFIG', () => {
    const yamlish = fc.oneof(
      fc.string(),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc
        .record({
          shares: fc.dictionary(
            fc.string({ maxLength: 40 }),
            fc.dictionary(fc.constantFrom('http', 'tcp', 'udp', 'name', 'private', 'auth', 'allow-ip', 'max-visitors', 'x'), fc.jsonValue()),
          ),
        })
        .map((v) => JSON.stringify(v)),
    );
    fc.assert(
      fc.property(yamlish, (text) => {
        const code = outcome(() => parseConfig(text, 'beam.yml'));
        return code === undefined || code === 'BEAM_ERR_CONFIG';
      }),
      // An alias with no anchor once escaped the YAML library as a plain ReferenceError.
      { numRuns: 2000, examples: [['*-'], ['a: *x'], ['&a [*a, *a]']] },
    );
  });

  it('a token file: any text is tokens or BEAM_ERR_CONFIG', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc
            .array(fc.tuple(fc.string({ minLength: 10, maxLength: 40 }), fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 })))
            .map((lines) => lines.map(([t, n]) => [t, ...n].join(' ')).join('\n')),
        ),
        (text) => {
          const code = outcome(() => new AgentTokens(text));
          return code === undefined || code === 'BEAM_ERR_CONFIG';
        },
      ),
      { numRuns: 2000 },
    );
  });
});
