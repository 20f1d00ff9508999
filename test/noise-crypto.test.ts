/**
 * Noise's cipher with its key imported once (transport/noise-crypto.ts): the
 * same ChaCha20-Poly1305 as libp2p-noise's default, byte for byte, either
 * way, on both sides of its native switch and for messages cut into lists;
 * a wrong tag or key still fails; a key changed in place is used as it is.
 */
import { createHash, randomBytes } from 'node:crypto';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';
import { describe, expect, it } from 'vitest';
import { noiseCrypto } from '../transport/noise-crypto.js';

const sha = (b: Uint8Array | { subarray(): Uint8Array }): string => createHash('sha256').update(b.subarray()).digest('hex');
/** libp2p-noise types its lists with its own copy of uint8arraylist: the same shape. */
type NoiseList = Parameters<typeof noiseCrypto.chaCha20Poly1305Encrypt>[0];
const asNoiseList = (list: Uint8ArrayList): NoiseList => list as unknown as NoiseList;
const nonceOf = (n: number): Uint8Array => {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32LE(n, 4);
  return nonce;
};

describe("Beam's Noise crypto", () => {
  it('seals and opens exactly as libp2p-noise does, either way, below, at and above its native switch', () => {
    const key = randomBytes(32);
    const ad = randomBytes(32);
    for (const [i, size] of [0, 1, 1199, 1200, 1201, 16 * 1024, 65_519].entries()) {
      const plain = randomBytes(size);
      const nonce = nonceOf(i);
      const ours = noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key);
      const theirs = defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key);
      expect(sha(ours)).toBe(sha(theirs));
      expect(ours.byteLength).toBe(size + 16);
      expect(sha(defaultCrypto.chaCha20Poly1305Decrypt(ours.subarray(), nonce, ad, key) as Uint8Array)).toBe(sha(plain));
      expect(sha(noiseCrypto.chaCha20Poly1305Decrypt(theirs.subarray(), nonce, ad, key) as Uint8Array)).toBe(sha(plain));
    }
  });

  it('takes a message cut into a list, as a stream hands it over', () => {
    const key = randomBytes(32);
    const plain = randomBytes(40_000);
    const nonce = nonceOf(7);
    const list = new Uint8ArrayList(plain.subarray(0, 1000), plain.subarray(1000, 30_000), plain.subarray(30_000));
    const sealed = noiseCrypto.chaCha20Poly1305Encrypt(asNoiseList(list), nonce, new Uint8Array(0), key);
    expect(sha(sealed)).toBe(sha(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, new Uint8Array(0), key)));
    const flat = sealed.subarray();
    const cut = new Uint8ArrayList(flat.subarray(0, 20_001), flat.subarray(20_001));
    expect(sha(noiseCrypto.chaCha20Poly1305Decrypt(asNoiseList(cut), nonce, new Uint8Array(0), key) as Uint8Array)).toBe(sha(plain));
  });

  it('refuses a tampered message or a wrong key, as the default does', () => {
    const key = randomBytes(32);
    const nonce = nonceOf(1);
    const sealed = Buffer.from(noiseCrypto.chaCha20Poly1305Encrypt(randomBytes(4096), nonce, new Uint8Array(0), key).subarray());
    const tampered = Buffer.from(sealed);
    tampered[100] = (tampered[100] as number) ^ 1;
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(tampered, nonce, new Uint8Array(0), key)).toThrow();
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), randomBytes(32))).toThrow();
  });

  it('uses a key changed in place, not the one it imported before', () => {
    const key = new Uint8Array(randomBytes(32));
    const plain = randomBytes(8192);
    const nonce = nonceOf(3);
    noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, new Uint8Array(0), key);
    key.set(randomBytes(32));
    const sealed = noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, new Uint8Array(0), key);
    expect(sha(sealed)).toBe(sha(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, new Uint8Array(0), key)));
  });
});
