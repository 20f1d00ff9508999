/** The part of @msimerson/stun (plain JavaScript) that `beam doctor` and the server's STUN (gateway/stun.ts) use. */
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
  export interface StunRequestMessage {
    readonly transactionId: Buffer;
    addXorAddress(address: string, port: number): unknown;
  }
  export interface StunServerHandle {
    on(event: string, listener: (request: StunRequestMessage, rinfo: { address: string; port: number }) => void): void;
    on(event: 'error', listener: (err: Error) => void): void;
    send(message: StunRequestMessage, port: number, address: string): void;
  }
  export function createServer(options: { type: 'udp4' | 'udp6'; socket?: Socket }): StunServerHandle;
  export function createMessage(type: number, transactionId?: Buffer): StunRequestMessage;
  const stun: {
    request: typeof request;
    createServer: typeof createServer;
    createMessage: typeof createMessage;
    constants: { STUN_BINDING_RESPONSE: number; STUN_EVENT_BINDING_REQUEST: string };
  };
  export default stun;
}
