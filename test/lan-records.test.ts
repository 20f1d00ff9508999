/**
 * What `beam connect` takes from an mDNS answer (transport/lan.ts): anyone on
 * the LAN can answer, so a record that is not a Beam share's of this version,
 * or says anything out of range, is no share at all.
 */
import { describe, expect, it } from 'vitest';
import { lanShareOf } from '../transport/lan.js';

const PEER = '12D3KooWEfYgkDvR5cNrGBBaXaY5WWmoTPrgh5d2boMNXM3GQz8A';
const TXT = { v: '1', peer: PEER, scheme: 'http', kind: 'http', private: '0' };

describe('an mDNS answer as a LAN share', () => {
  it('a Beam record gives the server to connect to, by the address that answered', () => {
    expect(lanShareOf('Swift-Otter-042', 7070, '192.168.1.20', TXT)).toEqual({
      name: 'swift-otter-042',
      port: 7070,
      peer: PEER,
      scheme: 'http',
      kind: 'http',
      private: false,
      address: '192.168.1.20',
      server: 'http://192.168.1.20:7070',
    });
    expect(lanShareOf('db-share-01', 7443, '10.0.0.5', { ...TXT, scheme: 'https', kind: 'tcp', private: '1' })).toMatchObject({
      server: 'https://10.0.0.5:7443',
      kind: 'tcp',
      private: true,
    });
  });

  it.each([
    ['another version', 'swift-otter-042', 7070, '192.168.1.20', { ...TXT, v: '2' }],
    ['no TXT', 'swift-otter-042', 7070, '192.168.1.20', undefined],
    ['no address', 'swift-otter-042', 7070, undefined, TXT],
    ['port 0', 'swift-otter-042', 0, '192.168.1.20', TXT],
    ['port past 65535', 'swift-otter-042', 70000, '192.168.1.20', TXT],
    ['a peer ID that is not one', 'swift-otter-042', 7070, '192.168.1.20', { ...TXT, peer: 'not-a-peer-id' }],
    ['a scheme of its own', 'swift-otter-042', 7070, '192.168.1.20', { ...TXT, scheme: 'javascript' }],
    ['a kind Beam has not', 'swift-otter-042', 7070, '192.168.1.20', { ...TXT, kind: 'smtp' }],
    ['a name that is no share name', 'a b', 7070, '192.168.1.20', TXT],
    ['a name too long for a label', 'x'.repeat(64), 7070, '192.168.1.20', TXT],
  ])('%s: no share', (_what, name, port, address, txt) => {
    expect(lanShareOf(name as string, port as number, address as string | undefined, txt as Record<string, unknown> | undefined)).toBeUndefined();
  });
});
