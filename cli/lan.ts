import { networkInterfaces } from 'node:os';

/** The first non-internal IPv4 address: what a teammate on the LAN would type. */
export function lanAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}
