/**
 * transport/noise-crypto.ts in the page: none of its own. A browser has no
 * node:crypto, and libp2p-noise's browser build brings its own cipher.
 */
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';

export const noiseCrypto: ICryptoInterface | undefined = undefined;
