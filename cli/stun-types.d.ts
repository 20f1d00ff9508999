/** The part of @msimerson/stun (plain JavaScript) that `beam doctor` uses. */
declare module '@msimerson/stun' {
  import type { Socket } from 'node:dgram';
  export interface StunAddress {
    address: string;
    port: number;
    family: 'IPv4' | 'IPv6';
  }
  export interface StunResponse {
    getXorAddress(): StunAddress | undefined;
    getAddress(): StunAddress | undefined;
  }
  export function request(url: string, options?: { socket?: Socket; timeout?: number; maxTimeout?: number; retries?: number }): Promise<StunResponse>;
  const stun: { request: typeof request };
  export default stun;
}
