import { networkInterfaces } from 'node:os';

/** This machine's IPv4 addresses a teammate on the LAN could reach: not loopback, not link-local. */
export function lanAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.')) out.push(a.address);
  }
  return out;
}

/** The first of them: what a teammate on the LAN would type. */
export function lanAddress(): string | undefined {
  return lanAddresses()[0];
}
