/**
 * Noise's crypto for Beam's secured pipes: libp2p-noise's own default, with
 * one change. For messages past its 1,200-byte switch to node:crypto, the
 * cipher state's key is imported into a KeyObject once, not on every message.
 * From Node 22 on (OpenSSL 3.5 in Node 24), `createCipheriv` with raw key
 * bytes builds a KeyObject per call: on Node 24 a 64 KiB ChaCha20-Poly1305
 * seal took 66 µs with the bytes and 33 µs with a KeyObject (1 KiB: 14.7 and
 * 4.2 µs), and the key import was a tenth of an agent's CPU on a relayed
 * download. Node 20 takes either at the same speed. A seal answers its
 * parts and tag as a list, as libp2p-noise's node:crypto cipher does for a
 * list, so a turn's messages (transport/secure.ts) are joined once, on their
 * way to the pipe, not three times: on Node 24, where allocating and
 * collecting those buffers was a fifth of a relaying agent's CPU, 100 MiB over
 * the relay ran ~8 % faster. The wire format is unchanged: this is the same
 * cipher, called differently.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';

const ALGORITHM = 'chacha20-poly1305';
const TAG_BYTES = 16;
/** Below this, libp2p-noise's WebAssembly cipher is the faster one (its own switch). */
const NATIVE_FROM_BYTES = 1200;

/** Each cipher state keeps its key array for its life; the bytes are checked too, so a key changed in place is imported again. */
const imported = new WeakMap<Uint8Array, { bytes: Buffer; key: KeyObject }>();

function keyOf(k: Uint8Array): KeyObject {
  const held = imported.get(k);
  if (held?.bytes.equals(k)) return held.key;
  const bytes = Buffer.from(k);
  const key = createSecretKey(bytes);
  imported.set(k, { bytes, key });
  return key;
}

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (plaintext.byteLength < NATIVE_FROM_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
    const cipher = createCipheriv(ALGORITHM, keyOf(k), nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength });
    // The sealed parts and the tag as a list, as libp2p-noise's own node:crypto
    // cipher answers a list: the stream joins its frame once, as it writes it,
    // where joining here too would copy and allocate every message twice.
    const sealed = new Uint8ArrayList();
    if (plaintext instanceof Uint8Array) sealed.append(cipher.update(plaintext));
    else for (const part of plaintext) sealed.append(cipher.update(part));
    const final = cipher.final();
    if (final.byteLength > 0) sealed.append(final);
    sealed.append(cipher.getAuthTag());
    return sealed as unknown as ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>;
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < NATIVE_FROM_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst);
    const data = ciphertext instanceof Uint8Array ? ciphertext : ciphertext.subarray();
    const end = data.byteLength - TAG_BYTES;
    const decipher = createDecipheriv(ALGORITHM, keyOf(k), nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(ad, { plaintextLength: end });
    decipher.setAuthTag(data.subarray(end));
    const opened = decipher.update(data.subarray(0, end));
    const final = decipher.final();
    return final.byteLength > 0 ? Buffer.concat([opened, final], opened.byteLength + final.byteLength) : opened;
  },
};
