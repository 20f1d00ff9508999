/** Pure parts of the path machinery: TURN REST credentials, ICE URLs, links, relay policy, fingerprints. */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DIRECT_RETRY_MS, MAX_DIRECT_RETRY_MS, TURN_CREDENTIAL_TTL_S } from '../shared/constants.js';
import { iceServersFor, parseIceUrl, turnCredentials, validateIceConfig } from '../signaling/ice.js';
import { ephemeralIdentity } from '../transport/identity.js';
import { connectLink, parseLink } from '../transport/link.js';
import { directPrologue, sdpFingerprint } from '../transport/secure.js';
import { nextDirectRetryDelay, relayPolicy } from '../transport/session.js';

describe('TURN REST credentials (coturn use-auth-secret)', () => {
  it('are <expiry>:beam-<tag> and base64(HMAC-SHA1(secret, username)), valid for TURN_CREDENTIAL_TTL_S', () => {
    const now = Date.UTC(2026, 10, 22, 12, 0, 0);
    const { username, credential } = turnCredentials('s3cret-s3cret-s3cret', now);
    const expiry = Number(username.split(':')[0]);
    expect(expiry).toBe(now / 1000 + TURN_CREDENTIAL_TTL_S);
    expect(username).toMatch(new RegExp(`^${expiry}:beam-[A-Za-z0-9_-]{12}$`));
    expect(credential).toBe(createHmac('sha1', 's3cret-s3cret-s3cret').update(username).digest('base64'));
  });

  it('are handed out only for TURN servers, fresh per call: two sessions in one second never share a username (coturn counts user-quota by it)', () => {
    const config = { stun: ['stun:a.example:3478'], turn: ['turn:a.example:3478?transport=udp'], turnSecret: 'x'.repeat(16) };
    const first = iceServersFor(config, 1_000_000);
    expect(first[0]).toEqual({ urls: 'stun:a.example:3478' });
    expect(first[1]?.username).toMatch(/^\d+:beam-[A-Za-z0-9_-]{12}$/);
    expect(iceServersFor(config, 2_000_000)[1]?.username).not.toBe(first[1]?.username);
    const sameSecond = new Set(Array.from({ length: 50 }, () => iceServersFor(config, 1_000_000)[1]?.username));
    expect(sameSecond.size).toBe(50);
  });

  it('validates flags with errors that show a good value', () => {
    expect(() => parseIceUrl('http://x', 'stun')).toThrow(/stun:stun.example.com:3478/);
    expect(() => parseIceUrl('turn:x:99999', 'turn')).toThrow(/out of range/);
    expect(parseIceUrl('turns:[2001:db8::1]:5349', 'turn')).toBe('turns:[2001:db8::1]:5349');
    expect(() => validateIceConfig({ stun: [], turn: ['turn:x:3478'] })).toThrow(/--turn needs --turn-secret/);
    expect(() => validateIceConfig({ stun: [], turn: ['turn:x:3478'], turnSecret: 'short' })).toThrow(/at least 16/);
  });
});

describe('links for beam connect', () => {
  it('carry the peer ID in the fragment and name the server by the rest of the host', async () => {
    const peer = (await ephemeralIdentity()).peerId;
    const link = connectLink('https://swift-otter-042.beam.example.com/', peer.toString());
    expect(link).toBe(`https://swift-otter-042.beam.example.com/#peer=${peer.toString()}`);
    const parsed = parseLink(link);
    expect(parsed).toMatchObject({ share: 'swift-otter-042', server: 'https://beam.example.com', url: 'https://swift-otter-042.beam.example.com/' });
    expect(parsed.peer?.equals(peer)).toBe(true);
  });

  it('refuse what is not a link, with a hint', () => {
    expect(() => parseLink('not a url')).toThrow(/e.g. http:\/\/swift-otter-042/);
    expect(() => parseLink('ftp://a.b/')).toThrow(/http:\/\/ or https:\/\//);
    expect(() => parseLink('http://localhost:7070/')).toThrow(/names no share/);
    expect(() => parseLink('http://a.localhost/#peer=nope')).toThrow(/not a peer ID/);
  });
});

describe('relay policy', () => {
  it('lets always or never from either side win over auto, and refuses always against never', () => {
    expect(relayPolicy('auto', 'auto')).toBe('auto');
    expect(relayPolicy('auto', 'always')).toBe('always');
    expect(relayPolicy('never', 'auto')).toBe('never');
    expect(() => relayPolicy('always', 'never')).toThrow(expect.objectContaining({ code: 'BEAM_ERR_RELAY_REFUSED' }));
  });
});

describe('the direct path prologue', () => {
  const sdp = (fp: string): string => `v=0\r\na=setup:actpass\r\na=fingerprint:sha-256 ${fp}\r\n`;
  it('names both fingerprints in order, normalised, so both ends compute the same bytes', () => {
    const a = sdp('ab:CD:01');
    const b = sdp('EF:23:45');
    expect(sdpFingerprint(a)).toBe('sha-256 AB:CD:01');
    expect(Buffer.from(directPrologue(a, b)).toString()).toBe('beam-webrtc-noise:sha-256 AB:CD:01|sha-256 EF:23:45');
    expect(Buffer.from(directPrologue(b, a))).not.toEqual(Buffer.from(directPrologue(a, b)));
  });
  it('refuses a description without a fingerprint', () => {
    expect(() => directPrologue('v=0\r\n', sdp('AA'))).toThrow(expect.objectContaining({ code: 'BEAM_ERR_BAD_MESSAGE' }));
  });
});

describe('IP rules', () => {
  it('match IPv4, IPv6 and IPv4-mapped addresses, deny before allow, and refuse an unknown address', async () => {
    const { IpRules } = await import('../peer-agent/access.js');
    const rules = new IpRules(['198.51.100.0/24', '2001:db8::/32'], ['198.51.100.7']);
    expect(rules.allows('198.51.100.1')).toBe(true);
    expect(rules.allows('::ffff:198.51.100.1')).toBe(true);
    expect(rules.allows('198.51.100.7')).toBe(false);
    expect(rules.allows('2001:db8::1')).toBe(true);
    expect(rules.allows('203.0.113.1')).toBe(false);
    expect(rules.allows(undefined)).toBe(false);
    expect(rules.allows('not-an-ip')).toBe(false);
    expect(new IpRules([], ['203.0.113.0/24']).allows('198.51.100.1')).toBe(true);
    expect(() => new IpRules(['2001:db8::/129'], [])).toThrow(/CIDR/);
  });
});

describe('retrying direct from TURN or the relay', () => {
  it('waits DIRECT_RETRY_MS first, doubles after each failed retry, and never waits more than MAX_DIRECT_RETRY_MS', () => {
    const waits = [DIRECT_RETRY_MS];
    for (let i = 0; i < 6; i++) waits.push(nextDirectRetryDelay(waits[waits.length - 1] as number));
    expect(waits).toEqual([15_000, 30_000, 60_000, 120_000, 120_000, 120_000, 120_000]);
    expect(MAX_DIRECT_RETRY_MS).toBe(120_000);
  });
});
