/**
 * The agent's end of a UDP share: one socket to the origin per flow (one
 * client address on the visitor's side), connected, so only the origin's
 * answers come back, and they go back on the path the flow last used.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { MAX_UDP_FLOWS, UDP_FLOW_IDLE_MS } from '../shared/constants.js';
import type { Origin } from './origin.js';

type Reply = (flow: number, payload: Buffer) => void;

interface Flow {
  socket: dgram.Socket;
  reply: Reply;
  connected: boolean;
  /** Datagrams sent before the socket finished connecting (resolving the origin's name). */
  early: Buffer[];
  lastUsed: number;
}

/** Datagrams held per flow while its socket connects; beyond that they are dropped, as UDP may. */
const EARLY_DATAGRAMS = 64;

export class UdpForwarder {
  private readonly flows = new Map<number, Flow>();
  private readonly origin: Origin;
  private readonly onUnreachable: (err: NodeJS.ErrnoException) => void;
  private readonly sweep: NodeJS.Timeout;

  constructor(origin: Origin, onUnreachable: (err: NodeJS.ErrnoException) => void) {
    this.origin = origin;
    this.onUnreachable = onUnreachable;
    this.sweep = setInterval(() => this.expire(), Math.min(UDP_FLOW_IDLE_MS, 30_000));
    this.sweep.unref();
  }

  /** A datagram from the visitor; the origin's answers go to `reply`. */
  receive(flowId: number, payload: Buffer, reply: Reply): void {
    let flow = this.flows.get(flowId);
    if (!flow) flow = this.open(flowId, reply);
    flow.reply = reply;
    flow.lastUsed = Date.now();
    if (flow.connected) flow.socket.send(payload);
    else if (flow.early.length < EARLY_DATAGRAMS) flow.early.push(payload);
  }

  private open(flowId: number, reply: Reply): Flow {
    if (this.flows.size >= MAX_UDP_FLOWS) {
      // Make room: forget the flow idle the longest.
      let oldest: [number, Flow] | undefined;
      for (const entry of this.flows) if (!oldest || entry[1].lastUsed < oldest[1].lastUsed) oldest = entry;
      if (oldest) this.drop(oldest[0]);
    }
    const family = net.isIPv6(this.origin.host) ? 'udp6' : 'udp4';
    const socket = dgram.createSocket(family);
    const flow: Flow = { socket, reply, connected: false, early: [], lastUsed: Date.now() };
    this.flows.set(flowId, flow);
    socket.on('message', (msg) => {
      flow.lastUsed = Date.now();
      flow.reply(flowId, msg);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // ECONNREFUSED: an ICMP port unreachable from the origin (nothing listens).
      if (err.code === 'ECONNREFUSED') this.onUnreachable(err);
    });
    socket.connect(this.origin.port, this.origin.host === 'localhost' ? '127.0.0.1' : this.origin.host, () => {
      flow.connected = true;
      for (const p of flow.early.splice(0)) socket.send(p);
    });
    return flow;
  }

  private drop(flowId: number): void {
    const flow = this.flows.get(flowId);
    if (!flow) return;
    this.flows.delete(flowId);
    flow.socket.close();
  }

  private expire(): void {
    const cutoff = Date.now() - UDP_FLOW_IDLE_MS;
    for (const [id, flow] of [...this.flows]) if (flow.lastUsed < cutoff) this.drop(id);
  }

  close(): void {
    clearInterval(this.sweep);
    for (const id of [...this.flows.keys()]) this.drop(id);
  }
}
