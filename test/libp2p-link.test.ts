/** The libp2p backend's links and options: what `beam --via libp2p` prints and `beam connect` takes (transport/libp2p.ts). */
import { describe, expect, it } from 'vitest';
import { share } from '../app/share.js';
import { BeamError } from '../shared/errors.js';
import { parseBackendName } from '../transport/backend.js';
import { libp2pLink, parseBootstrap, parseLibp2pLink, parseStun } from '../transport/libp2p.js';
import { isLibp2pLink } from '../transport/link-text.js';

const RELAY = '/ip4/198.18.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN';
const AGENT = '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9rSxAqvVpJfQa';
const ADDRESS = `${RELAY}/p2p-circuit/p2p/${AGENT}`;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as BeamError).code;
  }
  return undefined;
}

describe('libp2p links', () => {
  it('round-trip: the name, the relayed address, the pinned peer, the kind and the secret', () => {
    const link = libp2pLink('quick-fox-123', ADDRESS, { kind: 'tcp', secret: 's3cr3t' });
    expect(link).toBe(`beam+libp2p://quick-fox-123${ADDRESS}#kind=tcp&secret=s3cr3t`);
    expect(isLibp2pLink(link)).toBe(true);
    expect(parseLibp2pLink(link)).toEqual({ share: 'quick-fox-123', address: ADDRESS, peer: AGENT, secret: 's3cr3t', kind: 'tcp' });
    // An HTTP share's link has no fragment at all.
    expect(libp2pLink('quick-fox-123', ADDRESS, { kind: 'http' })).toBe(`beam+libp2p://quick-fox-123${ADDRESS}`);
    expect(parseLibp2pLink(`beam+libp2p://quick-fox-123${ADDRESS}`)).toMatchObject({ kind: 'http', secret: undefined });
    expect(parseLibp2pLink(libp2pLink('quick-fox-123', ADDRESS, { kind: 'udp' }))).toMatchObject({ kind: 'udp' });
  });

  it.each([
    ['no address', 'beam+libp2p://quick-fox-123'],
    ['a name that is no share name', `beam+libp2p://Not_A_Name${ADDRESS}`],
    ['an address that is no multiaddr', 'beam+libp2p://quick-fox-123/ip4/nope/tcp/1'],
    ['an address with no circuit', `beam+libp2p://quick-fox-123/ip4/198.18.0.1/tcp/4001/p2p/${AGENT}`],
    ['a peer ID that is none', `beam+libp2p://quick-fox-123${RELAY}/p2p-circuit/p2p/QmNotAPeerIdAtAll`],
    ['a kind Beam has not', `beam+libp2p://quick-fox-123${ADDRESS}#kind=sctp`],
  ])('%s: BEAM_ERR_BAD_OPTION, showing what a link looks like', (_what, text) => {
    expect(codeOf(() => parseLibp2pLink(text))).toBe('BEAM_ERR_BAD_OPTION');
    expect(() => parseLibp2pLink(text)).toThrow(/beam\+libp2p:\/\/<name>\/ip4\/\.\.\.\/p2p-circuit\/p2p\/<peer ID>/);
  });

  it('--bootstrap takes multiaddrs that name their peer; --stun takes stun:host[:port]; --via takes server or libp2p', () => {
    expect(parseBootstrap([RELAY])).toEqual([RELAY]);
    expect(codeOf(() => parseBootstrap(['/ip4/198.18.0.1/tcp/4001']))).toBe('BEAM_ERR_BAD_OPTION');
    expect(codeOf(() => parseBootstrap(['198.18.0.1:4001']))).toBe('BEAM_ERR_BAD_OPTION');
    expect(parseStun(['stun:198.18.0.1:3478', 'stun:stun.example.com'])).toEqual(['stun:198.18.0.1:3478', 'stun:stun.example.com']);
    expect(codeOf(() => parseStun(['turn:198.18.0.1:3478']))).toBe('BEAM_ERR_BAD_OPTION');
    expect(parseBackendName('libp2p')).toBe('libp2p');
    expect(codeOf(() => parseBackendName('tor'))).toBe('BEAM_ERR_BAD_OPTION');
  });
});

describe('share({ via: libp2p }) refuses what a libp2p share cannot have, before it starts anything', () => {
  it.each([
    [{ server: 'http://127.0.0.1:7070' }, /--server/],
    [{ tls: true }, /embedded server/],
    [{ lan: true }, /embedded server/],
    [{ port: 7071 }, /embedded server/],
    [{ relay: 'always' as const }, /hole punch only/],
    [{ allowIp: ['10.0.0.0/8'] }, /--private/],
    [{ oidc: 'https://accounts.example.com' }, /beam connect/],
    [{ bootstrap: ['/ip4/198.18.0.1/tcp/4001'] }, /\/p2p\/<peer ID>/],
    [{ stun: ['stun:'] }, /stun:<host>/],
  ])('%o', async (extra, message) => {
    const err = await share({ target: 3000, via: 'libp2p', ...extra }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BeamError);
    expect((err as BeamError).code).toBe('BEAM_ERR_BAD_OPTION');
    expect((err as BeamError).message).toMatch(message);
  });

  it('and --bootstrap or --stun without --via libp2p is refused too', async () => {
    const err = await share({ target: 3000, bootstrap: [RELAY] }).catch((e: unknown) => e);
    expect((err as BeamError).code).toBe('BEAM_ERR_BAD_OPTION');
  });
});

describe("a libp2p share's ready lines", () => {
  it('name the beam connect command, and no browser link', async () => {
    const { describe: describeEvent } = await import('../cli/output.js');
    const link = libp2pLink('quick-fox-123', ADDRESS);
    const text = describeEvent({ event: 'ready', name: 'quick-fox-123', url: link, link, origin: '127.0.0.1:3000', server: ADDRESS, via: 'libp2p' }) ?? '';
    expect(text).toContain(`beam connect ${link}`);
    expect(text).toContain('through libp2p (no Beam server)');
    expect(text).not.toContain('Link:');
  });
});
