/** What the shared code takes from node:crypto, for the browser bundle. */

import { sha256 } from '@noble/hashes/sha2.js';
import { Buffer } from 'buffer';

export function randomBytes(n: number): Buffer {
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return Buffer.from(bytes);
}

/** createHash('sha256') only: what transport/secure.ts needs for a share's secret. */
export function createHash(algorithm: string): { update(data: string | Uint8Array): { digest(encoding: 'hex'): string } } {
  if (algorithm !== 'sha256') throw new Error(`createHash: ${algorithm} is not in the browser bundle`);
  return {
    update(data) {
      const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
      return { digest: () => Buffer.from(sha256(bytes)).toString('hex') };
    },
  };
}
