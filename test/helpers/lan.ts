import { networkInterfaces } from 'node:os';

/** The first non-internal IPv4 address, as the CLI picks it; undefined on a machine with only loopback. */
export function lanAddressForTest(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}
