/**
 * A share on the LAN with no Beam server anywhere: the agent announces its
 * embedded server by mDNS (DNS-SD, `<name>._beam._tcp.local`, bonjour-service
 * on multicast-dns) and `beam connect <name>` (or a `*.localhost` link on
 * another machine) finds it there. What the TXT record says is a hint, not a
 * proof: anyone on the LAN can answer a query, so a visitor with the full link
 * keeps its peer ID pinned, and one that came by name is told whose key it
 * reached (the agent still proves that key in the Noise handshake).
 */
import type { Logger } from 'pino';
import { LAN_FIND_SETTLE_MS, LAN_FIND_TIMEOUT_MS, LAN_SERVICE_TYPE } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { validateName } from '../shared/names.js';

/** What a share says of itself on the LAN. */
export interface LanAnnouncement {
  name: string;
  /** The embedded server's port (signaling and gateway). */
  port: number;
  /** The agent's peer ID. */
  peer: string;
  scheme: 'http' | 'https';
  kind: 'http' | 'tcp' | 'udp';
  /** A private share: finding it by name is not enough, its link carries the secret. */
  private: boolean;
}

/** A share found on the LAN: its server, as a `beam connect` reaches it. */
export interface LanShare extends LanAnnouncement {
  /** e.g. http://192.168.1.20:7070 */
  server: string;
  address: string;
}

/** Format version of the TXT record; a record with another is not Beam's of this version. */
const TXT_VERSION = '1';

type BonjourModule = typeof import('bonjour-service');
type Service = import('bonjour-service').Service;

async function bonjour(log: Logger | undefined): Promise<InstanceType<BonjourModule['Bonjour']>> {
  const { Bonjour } = await import('bonjour-service');
  // Errors of the mDNS socket (no multicast route, port 5353 refused) are logged, never thrown at the share.
  return new Bonjour({}, (err: Error) => log?.warn({ err: err.message }, 'mDNS: the LAN announcement failed'));
}

/**
 * Announces a share on every LAN this machine is on, until close(). Resolves
 * once the first announcement is out. No probe for the name: a second share
 * answering to the same name makes `beam connect <name>` refuse, and a link
 * still finds its own agent by peer ID.
 */
export async function announceShare(a: LanAnnouncement, log?: Logger): Promise<{ close(): Promise<void> }> {
  const mdns = await bonjour(log);
  const service = mdns.publish({
    name: a.name,
    type: LAN_SERVICE_TYPE,
    port: a.port,
    // `<name>.local` resolves to this machine by mDNS, as browsers and ping ask for it: the share's name on the LAN.
    host: `${a.name}.local`,
    probe: false,
    disableIPv6: true,
    txt: { v: TXT_VERSION, peer: a.peer, scheme: a.scheme, kind: a.kind, private: a.private ? '1' : '0' },
  });
  await new Promise<void>((resolve) => {
    if (service.published) resolve();
    else service.once('up', () => resolve());
  });
  let closing: Promise<void> | undefined;
  return {
    close() {
      // A goodbye (TTL 0) first, so browsers of the LAN forget it at once; then the socket.
      closing ??= new Promise<void>((resolve) => {
        const done = (): void => mdns.destroy(() => resolve());
        const timer = setTimeout(done, 1_000);
        (service.stop as (cb: () => void) => void)(() => {
          clearTimeout(timer);
          done();
        });
      });
      return closing;
    },
  };
}

/** A TXT record and an address as a LanShare, or undefined when they are not a Beam share's of this version. */
export function lanShareOf(name: string, port: number, address: string | undefined, txt: Record<string, unknown> | undefined): LanShare | undefined {
  if (!txt || txt['v'] !== TXT_VERSION || !address || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  const { peer, scheme, kind } = txt;
  if (typeof peer !== 'string' || !/^[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(peer)) return undefined;
  if (scheme !== 'http' && scheme !== 'https') return undefined;
  if (kind !== 'http' && kind !== 'tcp' && kind !== 'udp') return undefined;
  let valid: string;
  try {
    valid = validateName(name);
  } catch {
    return undefined;
  }
  return { name: valid, port, peer, scheme, kind, private: txt['private'] === '1', address, server: `${scheme}://${address}:${port}` };
}

/**
 * Asks the LAN for the share `name`. With `peer` (a link's pin) only that
 * agent's answer counts; without, two agents answering to the name are an
 * error, since nothing says which one the user meant.
 */
export async function findShare(name: string, options: { peer?: string; timeoutMs?: number; log?: Logger } = {}): Promise<LanShare> {
  const wanted = validateName(name);
  const timeoutMs = options.timeoutMs ?? LAN_FIND_TIMEOUT_MS;
  const mdns = await bonjour(options.log);
  const found = new Map<string, LanShare>();
  try {
    return await new Promise<LanShare>((resolve, reject) => {
      let settle: NodeJS.Timeout | undefined;
      const decide = (): void => {
        clearTimeout(deadline);
        const shares = [...found.values()];
        if (shares.length === 1) resolve(shares[0] as LanShare);
        else
          reject(
            new BeamError(
              'BEAM_ERR_BAD_OPTION',
              `${shares.length} shares answer to "${wanted}" on this network (${shares.map((s) => s.server).join(', ')}): connect with the full link its owner sent you (it names the agent's peer ID)`,
            ),
          );
      };
      const deadline = setTimeout(() => {
        clearTimeout(settle);
        if (found.size > 0) decide();
        else
          reject(
            new BeamError(
              'BEAM_ERR_SHARE_NOT_FOUND',
              `no share named "${wanted}" answered on this network within ${timeoutMs} ms (mDNS): check that \`beam <port> --lan\` runs on the same network and that the firewall lets mDNS (UDP 5353) through, or connect with --server`,
            ),
          );
      }, timeoutMs);
      const browser = browse(mdns, (share) => {
        if (share.name !== wanted || (options.peer !== undefined && share.peer !== options.peer)) return;
        found.set(share.peer, share);
        if (options.peer !== undefined) {
          browser.stop();
          decide();
        } else settle ??= setTimeout(decide, LAN_FIND_SETTLE_MS);
      });
    });
  } finally {
    await new Promise<void>((resolve) => mdns.destroy(() => resolve()));
  }
}

/** Every Beam share that answers on the LAN within `timeoutMs` (`beam doctor`), by name. */
export async function browseShares(timeoutMs: number, log?: Logger): Promise<LanShare[]> {
  const mdns = await bonjour(log);
  const found = new Map<string, LanShare>();
  const browser = browse(mdns, (share) => found.set(`${share.name} ${share.peer}`, share));
  await new Promise((resolve) => setTimeout(resolve, timeoutMs));
  browser.stop();
  await new Promise<void>((resolve) => mdns.destroy(() => resolve()));
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name) || a.server.localeCompare(b.server));
}

/** Asks the LAN for Beam's shares; each valid answer goes to `onShare`, once for each agent (as many times as it answers). */
function browse(mdns: InstanceType<BonjourModule['Bonjour']>, onShare: (share: LanShare) => void): { stop(): void } {
  const consider = (service: Service): void => {
    // The answer's sender is the sharing machine on this LAN; its A records may list addresses of other networks first.
    const from = service.referer?.family === 'IPv4' ? service.referer.address : undefined;
    const address = from && (service.addresses ?? []).includes(from) ? from : ((service.addresses ?? []).find((a) => a.includes('.')) ?? from);
    const share = lanShareOf(service.name, service.port, address, service.txt as Record<string, unknown> | undefined);
    if (share) onShare(share);
  };
  const browser = mdns.find({ type: LAN_SERVICE_TYPE }, consider);
  // The browser keeps one service per DNS-SD name: a second agent answering to the same name arrives as an update.
  browser.on('txt-update', consider);
  browser.on('srv-update', consider);
  return browser;
}
