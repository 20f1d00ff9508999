/**
 * A NAT lab in network namespaces, built fresh for each scenario:
 *
 *   wan  (bridge br0, 198.18.0.1 and .2: the Beam server and coturn)
 *    |-- ra (198.18.0.11, NAT) -- ha (198.19.1.2): the agent and its origin
 *    |-- rb (198.18.0.12, NAT) -- hb (198.19.2.2): the visitor (`beam connect`)
 *
 * With a far server (ServerOptions.delayMs), 198.18.0.1 lives in a namespace
 * of its own (`serverNs`) behind a delay link to the bridge: the peers near
 * each other, the server far from both (bench/topology.ts).
 *
 * Addresses are from 198.18.0.0/15, the range set aside for benchmarking
 * (RFC 2544), and exist only inside these namespaces.
 *
 * NAT is iptables MASQUERADE on each router's wan side: plain MASQUERADE maps
 * endpoint-independently (a "cone" NAT); with --random-fully every new
 * destination gets a new port (symmetric). Both filter by conntrack: only
 * replies come in. Unsolicited traffic to the router itself is dropped in
 * INPUT too; without that, a peer's first probe creates a conntrack entry
 * that clashes with the later outbound mapping and hole punching fails even
 * between cone NATs.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The userspace delay link shipped beside the project (../shared/netlab). */
function delayLinkScript(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = path.dirname(dir)) {
    const candidate = path.join(dir, '..', 'shared', 'netlab', 'delaylink.py');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('../shared/netlab/delaylink.py not found beside the project: it adds delay where tc netem is missing');
}

export type NatKind = 'cone' | 'symmetric';

export interface SideOptions {
  nat: NatKind;
  /**
   * One-way delay added on the router's wan link (each direction), by
   * ../shared/netlab/delaylink.py in a namespace between router and bridge
   * (this kernel has no sch_netem). Host to host crosses two such links, so
   * 12.5 ms on both sides gives ~50 ms RTT.
   */
  delayMs?: number;
  /** Drop all UDP from this side's LAN to the wan. */
  udpBlocked?: boolean;
}

/** Where the server sits: on the bridge (default), or behind a delay link of its own. */
export interface ServerOptions {
  /** One-way delay between the server and the bridge, each direction. */
  delayMs?: number;
}

export const WAN_SERVER = '198.18.0.1';
export const WAN_SERVER_2 = '198.18.0.2';
/** A router's own address on the wan (side 1 or 2). */
export function routerWan(n: 1 | 2): string {
  return `198.18.0.${10 + n}`;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function inNs(ns: string, cmd: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** Starts a process inside a namespace, kept in `procs` for its lab to kill. */
function spawnIn(procs: ChildProcess[], ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { env: { ...process.env, BEAM_SERVER: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(child);
  return child;
}

/** A node child's stdout lines parsed as JSON, once it exits 0. */
function nodeIn(child: ChildProcess, ns: string, onLine?: (line: Record<string, unknown>) => void): Promise<Array<Record<string, unknown>>> {
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const parsed = JSON.parse(l) as Record<string, unknown>;
    lines.push(parsed);
    onLine?.(parsed);
  });
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve(lines) : reject(new Error(`node in ${ns} exited ${code}: ${stderr.slice(-1500)}`)))),
  );
}

export class NetLab {
  readonly wan: string;
  readonly ra: string;
  readonly ha: string;
  readonly rb: string;
  readonly hb: string;
  private readonly procs: ChildProcess[] = [];
  private readonly prefix: string;
  private readonly extraNs: string[] = [];
  private readonly wanIfOf = new Map<string, string>();
  /** The namespace that holds WAN_SERVER: the wan's, or its own with a far server. */
  serverNs: string;

  private constructor(prefix: string) {
    this.prefix = prefix;
    this.wan = `${prefix}w`;
    this.ra = `${prefix}ra`;
    this.ha = `${prefix}ha`;
    this.rb = `${prefix}rb`;
    this.hb = `${prefix}hb`;
    this.serverNs = this.wan;
  }

  static create(a: SideOptions, b: SideOptions, server: ServerOptions = {}): NetLab {
    const lab = new NetLab(`bl${process.pid % 100000}x${Math.floor(Math.random() * 1000)}`);
    try {
      lab.build(a, b, server);
    } catch (err) {
      lab.destroy();
      throw new Error(
        `building the NAT lab failed (needs root, iproute2 and iptables): ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`,
      );
    }
    return lab;
  }

  /**
   * A veth pair from `ns` (`nsIf`) to the wan's bridge side (`brIf`), with a
   * delay link in the middle when `delayMs` is set: nsIf <-> [delaylink] <-> brIf.
   */
  private linkToWan(ns: string, nsIf: string, brIf: string, tag: string, delayMs: number | undefined): void {
    const p = this.prefix;
    if (!delayMs) {
      ip('link', 'add', nsIf, 'type', 'veth', 'peer', 'name', brIf);
      ip('link', 'set', nsIf, 'netns', ns);
      ip('link', 'set', brIf, 'netns', this.wan);
      return;
    }
    const dl = `${p}d${tag}`;
    this.extraNs.push(dl);
    ip('netns', 'add', dl);
    ip('link', 'add', nsIf, 'type', 'veth', 'peer', 'name', `${p}${tag}da`);
    ip('link', 'add', `${p}${tag}db`, 'type', 'veth', 'peer', 'name', brIf);
    ip('link', 'set', nsIf, 'netns', ns);
    ip('link', 'set', `${p}${tag}da`, 'netns', dl);
    ip('link', 'set', `${p}${tag}db`, 'netns', dl);
    ip('link', 'set', brIf, 'netns', this.wan);
    for (const ifName of [`${p}${tag}da`, `${p}${tag}db`]) ip('-n', dl, 'link', 'set', ifName, 'up');
    // Frames the delay link copies must carry finished checksums: a veth
    // hands packet sockets frames whose checksum the NIC was to fill in.
    inNs(ns, 'ethtool', '-K', nsIf, 'tx', 'off');
    inNs(this.wan, 'ethtool', '-K', brIf, 'tx', 'off');
    inNs(this.wan, 'ethtool', '-K', 'br0', 'tx', 'off');
    const child = this.spawn(dl, 'python3', [delayLinkScript(), `${p}${tag}da`, `${p}${tag}db`, '--delay-ms', String(delayMs)]);
    child.stdout!.resume();
    child.stderr!.resume();
  }

  private build(a: SideOptions, b: SideOptions, server: ServerOptions): void {
    const p = this.prefix;
    for (const ns of [this.wan, this.ra, this.ha, this.rb, this.hb]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('-n', this.wan, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.wan, 'link', 'set', 'br0', 'up');
    ip('-n', this.wan, 'addr', 'add', `${WAN_SERVER_2}/24`, 'dev', 'br0');
    if (server.delayMs) {
      // The server far away: its own namespace, behind a delay link of its own.
      this.serverNs = `${p}s`;
      this.extraNs.push(this.serverNs);
      ip('netns', 'add', this.serverNs);
      ip('-n', this.serverNs, 'link', 'set', 'lo', 'up');
      this.linkToWan(this.serverNs, `${p}sw`, `${p}sb`, 's', server.delayMs);
      ip('-n', this.wan, 'link', 'set', `${p}sb`, 'master', 'br0', 'up');
      ip('-n', this.serverNs, 'addr', 'add', `${WAN_SERVER}/24`, 'dev', `${p}sw`);
      ip('-n', this.serverNs, 'link', 'set', `${p}sw`, 'up');
    } else ip('-n', this.wan, 'addr', 'add', `${WAN_SERVER}/24`, 'dev', 'br0');
    const side = (router: string, host: string, n: 1 | 2, opts: SideOptions): void => {
      const wanIf = `${p}${n}w`;
      this.wanIfOf.set(router, wanIf);
      const brIf = `${p}${n}b`;
      const lanIf = `${p}${n}l`;
      const hostIf = `${p}${n}h`;
      this.linkToWan(router, wanIf, brIf, String(n), opts.delayMs);
      ip('-n', this.wan, 'link', 'set', brIf, 'master', 'br0', 'up');
      ip('-n', router, 'addr', 'add', `${routerWan(n)}/24`, 'dev', wanIf);
      ip('-n', router, 'link', 'set', wanIf, 'up');
      ip('link', 'add', lanIf, 'type', 'veth', 'peer', 'name', hostIf);
      ip('link', 'set', lanIf, 'netns', router);
      ip('link', 'set', hostIf, 'netns', host);
      ip('-n', router, 'addr', 'add', `198.19.${n}.1/24`, 'dev', lanIf);
      ip('-n', router, 'link', 'set', lanIf, 'up');
      ip('-n', host, 'addr', 'add', `198.19.${n}.2/24`, 'dev', hostIf);
      ip('-n', host, 'link', 'set', hostIf, 'up');
      ip('-n', host, 'route', 'add', 'default', 'via', `198.19.${n}.1`);
      inNs(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
      inNs(router, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', wanIf, '-j', 'MASQUERADE', ...(opts.nat === 'symmetric' ? ['--random-fully'] : []));
      inNs(router, 'iptables', '-A', 'INPUT', '-i', wanIf, '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP');
      inNs(router, 'iptables', '-A', 'FORWARD', '-i', wanIf, '-m', 'conntrack', '--ctstate', 'NEW,INVALID', '-j', 'DROP');
      if (opts.udpBlocked) inNs(router, 'iptables', '-A', 'FORWARD', '-i', lanIf, '-p', 'udp', '-j', 'DROP');
    };
    side(this.ra, this.ha, 1, a);
    side(this.rb, this.hb, 2, b);
  }

  /**
   * Starts coturn on the wan with the shipped config (deploy/turnserver.conf),
   * STUN on both wan addresses, TURN REST credentials from `secret`.
   * BEAM_LAB_TURN_LOG=<file> keeps its (verbose) log.
   *
   * The lab's LANs (198.19.x) stand for users' private networks, which the
   * shipped config denies as peers, so coturn denies them here too. Left
   * allowed, coturn relays ICE checks toward them, the wan (no default route)
   * answers ENETUNREACH, and coturn drops the client's whole allocation: its
   * later requests land in a new session (438 "Wrong nonce", then a bare
   * 400), and no TURN pair ever forms.
   */
  startTurn(root: string, secret: string): ChildProcess {
    if (this.serverNs !== this.wan) throw new Error('coturn listens on both wan addresses: not with a far server');
    const log = process.env['BEAM_LAB_TURN_LOG'];
    const turn = this.spawn(this.wan, 'turnserver', [
      '-c',
      path.join(root, 'deploy/turnserver.conf'),
      '--listening-ip',
      WAN_SERVER,
      '--listening-ip',
      WAN_SERVER_2,
      '--relay-ip',
      WAN_SERVER,
      '--static-auth-secret',
      secret,
      '--realm',
      'beam.test',
      '--denied-peer-ip',
      '198.19.0.0-198.19.255.255',
      '--pidfile',
      path.join(tmpdir(), `${this.wan}.turn.pid`),
      '--log-file',
      'stdout',
      ...(log ? ['--verbose'] : []),
    ]);
    if (log) turn.stdout!.pipe(createWriteStream(log));
    else turn.stdout!.resume();
    turn.stderr!.resume();
    return turn;
  }

  /** Forwards TCP `port` on a router's wan address to `host` behind it (a port forward, for baselines). */
  forwardPort(router: string, port: number, host: string): void {
    const wanIf = this.wanIfOf.get(router);
    if (!wanIf) throw new Error(`${router} is not a router of this lab`);
    inNs(
      router,
      'iptables',
      '-t',
      'nat',
      '-A',
      'PREROUTING',
      '-i',
      wanIf,
      '-p',
      'tcp',
      '--dport',
      String(port),
      '-j',
      'DNAT',
      '--to-destination',
      `${host}:${port}`,
    );
    inNs(router, 'iptables', '-I', 'FORWARD', '-i', wanIf, '-p', 'tcp', '-d', host, '--dport', String(port), '-j', 'ACCEPT');
  }

  /**
   * Drops (or, with `false`, lets through again) UDP from side A toward side
   * B's router: no direct pair can form, while the server and TURN stay
   * reachable (a firewall that changes its mind, a NAT that gets a new rule).
   */
  cutDirect(cut = true): void {
    inNs(this.ra, 'iptables', cut ? '-I' : '-D', 'FORWARD', '-p', 'udp', '-d', routerWan(2), '-j', 'DROP');
  }

  /** Drops (or, with `false`, lets through again) all UDP through a router: a cut direct path. */
  cutUdp(router: string, cut = true): void {
    inNs(router, 'iptables', cut ? '-I' : '-D', 'FORWARD', '-p', 'udp', '-j', 'DROP');
  }

  /** Starts a process inside a namespace; it is killed by destroy(). */
  spawn(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    return spawnIn(this.procs, ns, cmd, args, env);
  }

  /** Runs node with an inline ES module inside a namespace; resolves with its stdout lines parsed as JSON. */
  node(ns: string, script: string, onLine?: (line: Record<string, unknown>) => void): Promise<Array<Record<string, unknown>>> {
    return nodeIn(this.spawn(ns, process.execPath, ['--input-type=module', '-e', script]), ns, onLine);
  }

  destroy(): void {
    for (const child of this.procs) if (child.exitCode === null) child.kill('SIGKILL');
    for (const ns of [this.wan, this.ra, this.ha, this.rb, this.hb, ...this.extraNs]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // never created
      }
    }
  }
}

/**
 * One LAN with no router and no server: hosts a and b (10.77.7.1 and .2)
 * on a bridge in a namespace of its own, multicast (mDNS) flooded between
 * them as on an office switch. Nothing else is reachable from either host.
 */
export class LanLab {
  readonly switch: string;
  readonly a: string;
  readonly b: string;
  // Private addresses, as a LAN's are (a --tls share's local authority signs no other), inside these namespaces only.
  static readonly A = '10.77.7.1';
  static readonly B = '10.77.7.2';
  private readonly procs: ChildProcess[] = [];

  private constructor(prefix: string) {
    this.switch = `${prefix}s`;
    this.a = `${prefix}a`;
    this.b = `${prefix}b`;
  }

  static create(): LanLab {
    const prefix = `ll${process.pid % 100000}x${Math.floor(Math.random() * 1000)}`;
    const lab = new LanLab(prefix);
    try {
      ip('netns', 'add', lab.switch);
      ip('-n', lab.switch, 'link', 'add', 'br0', 'type', 'bridge');
      ip('-n', lab.switch, 'link', 'set', 'br0', 'up');
      for (const [ns, address, tag] of [
        [lab.a, LanLab.A, 'a'],
        [lab.b, LanLab.B, 'b'],
      ] as const) {
        ip('netns', 'add', ns);
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        ip('link', 'add', `${prefix}${tag}h`, 'type', 'veth', 'peer', 'name', `${prefix}${tag}p`);
        ip('link', 'set', `${prefix}${tag}h`, 'netns', ns);
        ip('link', 'set', `${prefix}${tag}p`, 'netns', lab.switch);
        ip('-n', lab.switch, 'link', 'set', `${prefix}${tag}p`, 'master', 'br0', 'up');
        ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', `${prefix}${tag}h`);
        ip('-n', ns, 'link', 'set', `${prefix}${tag}h`, 'up');
        // Where multicast goes out (a LAN host's default route would take it; these have none).
        ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', `${prefix}${tag}h`);
      }
    } catch (err) {
      lab.destroy();
      throw new Error(`building the LAN lab failed (needs root and iproute2): ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`);
    }
    return lab;
  }

  /** Runs node with an inline ES module inside a host; resolves with its stdout lines parsed as JSON. */
  node(ns: string, script: string, onLine?: (line: Record<string, unknown>) => void): Promise<Array<Record<string, unknown>>> {
    return nodeIn(spawnIn(this.procs, ns, process.execPath, ['--input-type=module', '-e', script], {}), ns, onLine);
  }

  destroy(): void {
    for (const child of this.procs) if (child.exitCode === null) child.kill('SIGKILL');
    for (const ns of [this.a, this.b, this.switch]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
  }
}
