/**
 * The libp2p backend (`--via libp2p`): no Beam server anywhere.
 *
 *   agent    a js-libp2p node with the agent's own key (so its peer ID is the
 *            one Beam's links pin), reserves a slot on a circuit relay v2
 *            found among its bootstrap peers, and serves the share on
 *            LIBP2P_PROTOCOL_PREFIX + name, on direct connections only.
 *   visitor  dials `<relay>/p2p-circuit/webrtc/p2p/<agent>`: libp2p's WebRTC
 *            private-to-private transport sends its SDP over the relayed
 *            connection (Noise-secured end to end with the agent's key, so
 *            the relay can't swap the DTLS fingerprints), ICE punches the
 *            hole with STUN, and the share's stream runs on that direct
 *            WebRTC connection.
 *
 * The relay carries only the hole punch: a handful of signaling messages,
 * well within circuit relay v2's default limits. When ICE finds no pair
 * (symmetric NATs on both sides), the dial fails with
 * BEAM_ERR_HOLE_PUNCH_FAILED: public relays are not Beam's to fill.
 *
 * Why not DCUtR, libp2p's usual upgrade: it dials only the addresses that
 * @libp2p/utils calls public, and (in js-libp2p) only once AutoNAT confirmed
 * them; the WebRTC transport lets ICE find the pair instead, as Beam's own
 * direct path does (docs/backends.md).
 */
import './polyfill.js';
// @libp2p/webrtc runs on node-datachannel too: Beam's engine module sets its SCTP buffers (SCTP_BUFFER_BYTES) for every peer connection of the process.
import './ndc.js';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { identify } from '@libp2p/identify';
import type { Connection, Libp2p, PrivateKey, Stream } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { webRTC } from '@libp2p/webrtc';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import type { Logger } from 'pino';
import type { BackendListening, BackendPipe, BackendShare, BackendTarget, BackendVisitors, NetworkBackend } from '../shared/backend.js';
import {
  LIBP2P_DEFAULT_STUN,
  LIBP2P_DIAL_TIMEOUT_MS,
  LIBP2P_LINK_PROTOCOL,
  LIBP2P_MAX_INBOUND_STREAMS,
  LIBP2P_PROTOCOL_PREFIX,
  LIBP2P_PUBLIC_BOOTSTRAP,
  LIBP2P_RESERVE_TIMEOUT_MS,
} from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { validateName } from '../shared/names.js';
import type { ShareKind } from '../shared/signaling.js';
import { parsePeerId } from './identity.js';
import { noiseCrypto } from './noise-crypto.js';
import type { Pipe } from './secure.js';

export interface Libp2pBackendOptions {
  /** Multiaddrs of the peers to join through (each with its /p2p/<id>). Default LIBP2P_PUBLIC_BOOTSTRAP. */
  bootstrap?: readonly string[] | undefined;
  /** STUN servers for the hole punch (stun:host:port). Default LIBP2P_DEFAULT_STUN. */
  stun?: readonly string[] | undefined;
  logger: Logger;
}

/** `--bootstrap`'s values, checked: multiaddrs that name their peer. */
export function parseBootstrap(list: readonly string[]): string[] {
  return list.map((text) => {
    let ma: Multiaddr;
    try {
      ma = multiaddr(text);
    } catch (err) {
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--bootstrap ${text}: not a multiaddr (${(err as Error).message})`);
    }
    if (ma.getComponents().at(-1)?.name !== 'p2p')
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--bootstrap ${text}: a bootstrap peer's multiaddr ends with its /p2p/<peer ID>`);
    return ma.toString();
  });
}

/** `--stun`'s values for this backend, checked: stun:host:port. */
export function parseStun(list: readonly string[]): string[] {
  for (const url of list) {
    if (!/^stun:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(url))
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--stun ${url}: a STUN server is stun:<host>[:<port>]`);
  }
  return [...list];
}

/**
 * The link `beam connect` opens: `beam+libp2p://<name>/<relayed multiaddr>`,
 * and in the fragment what the share carries (when not HTTP) and a private
 * share's secret: `#kind=tcp&secret=...`.
 */
export function libp2pLink(share: string, address: string, extra: { kind?: ShareKind; secret?: string | undefined } = {}): string {
  const fragment = new URLSearchParams({
    ...(extra.kind !== undefined && extra.kind !== 'http' ? { kind: extra.kind } : {}),
    ...(extra.secret !== undefined ? { secret: extra.secret } : {}),
  }).toString();
  return `${LIBP2P_LINK_PROTOCOL}//${share}${address}${fragment ? `#${fragment}` : ''}`;
}

/** Reads a libp2p link: the share, the agent's relayed multiaddr and peer ID (which it must prove), and a secret. */
export function parseLibp2pLink(text: string): BackendTarget {
  const bad = (why: string): BeamError =>
    new BeamError(
      'BEAM_ERR_BAD_OPTION',
      `"${text.slice(0, 120)}" is not a libp2p share's link (${why}): it looks like ${LIBP2P_LINK_PROTOCOL}//<name>/ip4/.../p2p-circuit/p2p/<peer ID>`,
    );
  const rest = text.slice(LIBP2P_LINK_PROTOCOL.length + 2);
  const hash = rest.indexOf('#');
  const body = hash < 0 ? rest : rest.slice(0, hash);
  const slash = body.indexOf('/');
  if (slash <= 0) throw bad('no name and address');
  let share: string;
  try {
    share = validateName(body.slice(0, slash));
  } catch {
    throw bad(`"${body.slice(0, slash)}" is no share name`);
  }
  let address: Multiaddr;
  try {
    address = multiaddr(body.slice(slash));
  } catch (err) {
    throw bad((err as Error).message);
  }
  const parts = address.getComponents();
  const last = parts.at(-1);
  if (last?.name !== 'p2p' || last.value === undefined || parts.at(-2)?.name !== 'p2p-circuit') throw bad('the address must end /p2p-circuit/p2p/<peer ID>');
  try {
    parsePeerId(last.value);
  } catch {
    throw bad(`${last.value} is no peer ID`);
  }
  const fragment = new URLSearchParams(hash < 0 ? '' : rest.slice(hash + 1));
  const kind = fragment.get('kind') ?? 'http';
  if (kind !== 'http' && kind !== 'tcp' && kind !== 'udp') throw bad(`#kind=${kind.slice(0, 20)}: a libp2p share carries http, tcp or udp`);
  return { share, address: address.toString(), peer: last.value, secret: fragment.get('secret') ?? undefined, kind };
}

/** A Pipe over a libp2p stream, with its backpressure: send() false until 'drain'. */
export function streamPipe(stream: Stream): Pipe {
  return {
    send(bytes) {
      if (stream.status !== 'open' || stream.writeStatus !== 'writable') return true;
      try {
        return stream.send(bytes);
      } catch {
        return true;
      }
    },
    bufferedAmount: () => stream.writeBufferLength,
    onDrain: (cb) => stream.addEventListener('drain', () => cb()),
    onMessage: (cb) => stream.addEventListener('message', (evt) => cb(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())),
    onClose: (cb) => stream.addEventListener('close', () => cb(), { once: true }),
    pause: () => stream.pause(),
    resume: () => stream.resume(),
    close: () => {
      // What was sent goes first; a stream that can't finish is cut.
      stream.close({ signal: AbortSignal.timeout(2_000) }).catch(() => stream.abort(new Error('closed')));
    },
  };
}

/** The relayed multiaddr of `node` a visitor can dial over TCP (the one transport both ends have), or undefined. */
function circuitAddress(node: Libp2p): string | undefined {
  for (const ma of node.getMultiaddrs()) {
    const names = ma.getComponents().map((c) => c.name);
    const circuit = names.indexOf('p2p-circuit');
    if (circuit < 0 || names.includes('webrtc')) continue;
    if (names.slice(0, circuit).every((n) => ['ip4', 'ip6', 'dns', 'dns4', 'dns6', 'tcp', 'p2p'].includes(n))) return ma.toString();
  }
  return undefined;
}

/** What went wrong in a libp2p dial, as a BeamError that says what to do. */
function dialError(err: unknown, target: BackendTarget, timedOut: boolean): BeamError {
  const e = err as Error & { name?: string; code?: string };
  const text = `${e.name ?? ''} ${e.message ?? ''}`;
  if (e instanceof BeamError) return e;
  if (/UnexpectedPeer|InvalidPeerId|peer id/i.test(text) && !/protocol/i.test(text))
    return new BeamError('BEAM_ERR_PEER_MISMATCH', `the agent at the link's address is not ${target.peer}`, { cause: err });
  if (/NO_RESERVATION|no reservation/i.test(text))
    return new BeamError(
      'BEAM_ERR_SHARE_NOT_FOUND',
      `the relay holds no reservation for ${target.peer}: its beam has stopped, or moved to another relay (ask for its link again)`,
      {
        cause: err,
      },
    );
  if (/UnsupportedProtocol|protocol selection failed|protocols? not supported/i.test(text))
    return new BeamError('BEAM_ERR_SHARE_NOT_FOUND', `the agent ${target.peer} serves no share "${target.share}"`, { cause: err });
  if (/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT/.test(text) && !/webrtc/i.test(text))
    return new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `the circuit relay the link names did not answer (${e.message})`, { cause: err });
  if (timedOut || /Timeout|ICE|connection failed|peer connection/i.test(text))
    return new BeamError('BEAM_ERR_HOLE_PUNCH_FAILED', `no direct WebRTC connection to ${target.peer} within ${LIBP2P_DIAL_TIMEOUT_MS} ms (${e.message})`, {
      cause: err,
    });
  return new BeamError('BEAM_ERR_AGENT_UNREACHABLE', e.message, { cause: err });
}

export class Libp2pBackend implements NetworkBackend {
  readonly name = 'libp2p' as const;
  /** A hole-punched WebRTC connection: libp2p's relays carry only the hole punch. */
  readonly paths = ['direct'] as const;
  private readonly options: Libp2pBackendOptions;
  private readonly nodes = new Set<Libp2p>();
  /** The agent's node, shared by the shares this backend serves, and its relayed address now. */
  private agent: Promise<{ node: Libp2p; address: string }> | undefined;
  private address: string | undefined;
  private readonly addressListeners = new Set<(address: string) => void>();
  private listeners = 0;
  /** The visitor's node: one per backend, made on the first dial. */
  private dialer: Promise<Libp2p> | undefined;

  constructor(options: Libp2pBackendOptions) {
    this.options = options;
  }

  private async node(privateKey: PrivateKey | undefined, listen: boolean): Promise<Libp2p> {
    const stun = this.options.stun;
    const node = await createLibp2p({
      ...(privateKey ? { privateKey } : {}),
      addresses: { listen: listen ? ['/p2p-circuit', '/webrtc'] : [] },
      transports: [
        tcp(),
        circuitRelayTransport(),
        webRTC({ rtcConfiguration: { iceServers: (stun && stun.length > 0 ? stun : LIBP2P_DEFAULT_STUN).map((urls) => ({ urls })) } }),
      ],
      connectionEncrypters: [noise({ crypto: noiseCrypto })],
      streamMuxers: [yamux()],
      services: { identify: identify() },
      // libp2p caps each address's dial at 6 s of its own (a hole punch is one address): the budget
      // Beam states, LIBP2P_DIAL_TIMEOUT_MS, is the one that applies. A slow machine took more than 6 s once.
      connectionManager: { dialTimeout: LIBP2P_DIAL_TIMEOUT_MS, addressDialTimeout: LIBP2P_DIAL_TIMEOUT_MS },
    });
    this.nodes.add(node);
    return node;
  }

  async listen(share: BackendShare, visitors: BackendVisitors): Promise<BackendListening> {
    const name = share.name;
    if (name === undefined) throw new BeamError('BEAM_ERR_INTERNAL', 'a libp2p share needs a name: its link names it');
    const log = this.options.logger.child({ backend: 'libp2p', share: name });
    const identity = await share.key();
    // One node for every share of this backend (beam start): one peer ID, one reservation, a protocol per share.
    this.agent ??= this.startAgent(identity.privateKey);
    const agent = this.agent;
    let node: Libp2p;
    let address: string;
    try {
      ({ node, address } = await agent);
    } catch (err) {
      if (this.agent === agent) this.agent = undefined;
      throw err;
    }
    if (!node.peerId.equals(identity.peerId)) throw new BeamError('BEAM_ERR_INTERNAL', "a backend's shares have one agent key");
    const protocol = LIBP2P_PROTOCOL_PREFIX + name;
    if (node.getProtocols().includes(protocol)) throw new BeamError('BEAM_ERR_NAME_TAKEN', `this agent already serves "${name}"`);
    // Only on a direct connection (libp2p refuses the protocol on a relayed one): the relay carries the hole punch alone.
    await node.handle(
      protocol,
      (stream: Stream, connection: Connection) => {
        log.debug({ remote: connection.remotePeer.toString() }, 'libp2p visitor');
        visitors.pipe({ pipe: streamPipe(stream), path: 'direct', address: undefined });
      },
      { maxInboundStreams: LIBP2P_MAX_INBOUND_STREAMS },
    );
    this.listeners++;
    log.info({ address }, 'listening through a circuit relay');
    let closed = false;
    const moved = new Set<(address: string) => void>();
    return {
      link: libp2pLink(name, this.address ?? address, { kind: share.kind }),
      address: this.address ?? address,
      addresses: node.getMultiaddrs().map(String),
      onAddress: (cb) => {
        moved.add(cb);
        this.addressListeners.add(cb);
      },
      close: async () => {
        if (closed) return;
        closed = true;
        for (const cb of moved) this.addressListeners.delete(cb);
        await node.unhandle(protocol);
        if (--this.listeners > 0) return;
        this.agent = undefined;
        this.nodes.delete(node);
        await node.stop();
      },
    };
  }

  /** The agent's node: joins through the bootstrap peers and waits for a relay reservation. Resolves with its relayed address. */
  private async startAgent(privateKey: PrivateKey): Promise<{ node: Libp2p; address: string }> {
    const node = await this.node(privateKey, true);
    const joined = await this.join(node);
    if (joined.address !== undefined) {
      this.address = joined.address;
      // A reservation lost (the relay restarted, or dropped us) and made on another relay: the share's address moves.
      node.addEventListener('self:peer:update', () => {
        const current = this.address;
        if (current !== undefined && node.getMultiaddrs().some((ma) => ma.toString() === current)) return;
        const next = circuitAddress(node);
        if (next === undefined || next === current) return;
        this.address = next;
        this.options.logger.child({ backend: 'libp2p' }).info({ address: next }, 'moved to another circuit relay');
        for (const cb of this.addressListeners) cb(next);
      });
      return { node, address: joined.address };
    }
    this.nodes.delete(node);
    await node.stop();
    throw joined.error;
  }

  /**
   * Dials the bootstrap peers from a listening node and waits for a circuit
   * relay reservation (LIBP2P_RESERVE_TIMEOUT_MS): the relayed address, or
   * the error that says what failed; and what each bootstrap peer answered.
   */
  private async join(node: Libp2p): Promise<{ bootstrap: Array<{ address: string; ok: boolean; detail?: string }>; address?: string; error?: BeamError }> {
    const log = this.options.logger.child({ backend: 'libp2p' });
    const reserved = new Promise<string>((resolve, reject) => {
      const check = (): void => {
        const address = circuitAddress(node);
        if (address === undefined) return;
        node.removeEventListener('self:peer:update', check);
        clearTimeout(timer);
        resolve(address);
      };
      const timer = setTimeout(() => {
        node.removeEventListener('self:peer:update', check);
        reject(
          new BeamError(
            'BEAM_ERR_SERVER_UNREACHABLE',
            `no circuit relay among the bootstrap peers gave this agent a reservation within ${LIBP2P_RESERVE_TIMEOUT_MS / 1000} s: pass --bootstrap <multiaddr> of a libp2p node that runs circuit relay v2`,
          ),
        );
      }, LIBP2P_RESERVE_TIMEOUT_MS);
      node.addEventListener('self:peer:update', check);
      check();
    });
    reserved.catch(() => {});
    const list = this.options.bootstrap ?? LIBP2P_PUBLIC_BOOTSTRAP;
    const dials = await Promise.allSettled(list.map((text) => node.dial(multiaddr(text), { signal: AbortSignal.timeout(LIBP2P_RESERVE_TIMEOUT_MS) })));
    const bootstrap = dials.map((d, i) =>
      d.status === 'fulfilled' ? { address: list[i] as string, ok: true } : { address: list[i] as string, ok: false, detail: (d.reason as Error).message },
    );
    for (const b of bootstrap) if (!b.ok) log.info({ peer: b.address, err: b.detail }, 'bootstrap peer did not answer');
    if (bootstrap.every((b) => !b.ok))
      return {
        bootstrap,
        error: new BeamError(
          'BEAM_ERR_SERVER_UNREACHABLE',
          `none of the ${bootstrap.length} libp2p bootstrap peers answered (${bootstrap[0]?.detail ?? 'no peers'}): check the network, or pass --bootstrap <multiaddr>`,
        ),
      };
    try {
      return { bootstrap, address: await reserved };
    } catch (err) {
      return { bootstrap, error: err as BeamError };
    }
  }

  /**
   * `beam doctor --via libp2p`: joins as an agent would, with a throwaway
   * key, and says which bootstrap peers answered and which relayed address
   * a reservation gave (or why none did).
   */
  async probe(): Promise<{ bootstrap: Array<{ address: string; ok: boolean; detail?: string }>; relay: { ok: boolean; address?: string; detail?: string } }> {
    const node = await this.node(undefined, true);
    try {
      const joined = await this.join(node);
      return {
        bootstrap: joined.bootstrap,
        relay: joined.address !== undefined ? { ok: true, address: joined.address } : { ok: false, detail: joined.error?.detail ?? 'no reservation' },
      };
    } finally {
      this.nodes.delete(node);
      await node.stop();
    }
  }

  async dial(target: BackendTarget, options: { signal?: AbortSignal } = {}): Promise<BackendPipe> {
    this.dialer ??= this.node(undefined, false);
    const node = await this.dialer;
    const address = multiaddr(target.address);
    const relayed = address.decapsulateCode(address.getComponents().at(-1)?.code ?? 0).toString();
    const direct = multiaddr(`${relayed}/webrtc/p2p/${target.peer}`);
    const timeout = AbortSignal.timeout(LIBP2P_DIAL_TIMEOUT_MS);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      const stream = await node.dialProtocol(direct, LIBP2P_PROTOCOL_PREFIX + target.share, { signal });
      return { pipe: streamPipe(stream), path: 'direct', address: undefined };
    } catch (err) {
      throw dialError(err, target, timeout.aborted);
    }
  }

  async close(): Promise<void> {
    const nodes = [...this.nodes];
    this.nodes.clear();
    await Promise.all(nodes.map((n) => Promise.resolve(n.stop()).catch(() => {})));
  }
}
