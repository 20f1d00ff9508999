/**
 * Noise's cipher on the relay path, measured (issue 18, "the relay's cost"):
 * ChaCha20-Poly1305 through Node's native crypto, the pure-JS implementation
 * (@noble/ciphers), what @chainsafe/libp2p-noise uses by default in Node,
 * and Beam's (that default with the key imported once: transport/noise-crypto.ts),
 * encrypting and decrypting the same bytes in messages of the relay's sizes.
 *
 *   npm run build && node dist/bench/diag/noise-crypto.js [--mib 64]
 */
import { randomBytes } from 'node:crypto';
import { defaultCrypto, nodeCrypto, pureJsCrypto } from '@chainsafe/libp2p-noise/crypto';
import { numberArg } from '../../test/helpers/services.js';
import { noiseCrypto } from '../../transport/noise-crypto.js';

const MIB = numberArg('--mib', 64);
const key = randomBytes(32);
const nonce = Buffer.alloc(12);
const ad = new Uint8Array(0);
type Impl = typeof nodeCrypto;

function measure(impl: Impl, size: number): number {
  const message = randomBytes(size);
  const count = Math.max(1, Math.floor((MIB * 1024 * 1024) / size));
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    nonce.writeUInt32LE(i, 4);
    const sealed = impl.chaCha20Poly1305Encrypt(message, nonce, ad, key);
    const opened = impl.chaCha20Poly1305Decrypt(sealed as Uint8Array, nonce, ad, key);
    if (opened === null || opened.byteLength !== size) throw new Error('round trip failed');
  }
  const seconds = (performance.now() - started) / 1000;
  return (count * size) / seconds / 1e6;
}

const impls: Array<[string, Impl]> = [
  ['node:crypto (native)', nodeCrypto],
  ['libp2p-noise default in Node', defaultCrypto as Impl],
  ['pure JS (@noble/ciphers)', pureJsCrypto as Impl],
  ["Beam's (the default, its key imported once)", noiseCrypto as Impl],
];
const sizes = [1024, 16 * 1024, 64 * 1024];
const lines = [
  `ChaCha20-Poly1305, encrypt + decrypt, ${MIB} MiB per cell, MB/s (Node ${process.version})`,
  '',
  `| implementation | ${sizes.map((s) => `${s / 1024} KiB messages`).join(' | ')} |`,
  `|---|${sizes.map(() => '---').join('|')}|`,
];
for (const [name, impl] of impls) {
  measure(impl, 16 * 1024); // warm-up
  lines.push(`| ${name} | ${sizes.map((s) => measure(impl, s).toFixed(0)).join(' | ')} |`);
}
process.stdout.write(`${lines.join('\n')}\n`);
