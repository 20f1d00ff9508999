/**
 * A NAT lab in network namespaces, built fresh for each scenario:
 *
 *   wan  (bridge br0, 198.18.0.1 and .2: the Beam server and coturn)
 *    |-- ra (198.18.0.11, NAT) -- ha (198.19.1.2): the agent and its origin
 *    |-- rb (198.18.0.12, NAT) -- hb (198.19.2.2): the visitor (`beam connect`)
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
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type NatKind = 'cone' | 'symmetric';

export interface SideOptions {
  nat: NatKind;
  /** Drop all UDP from this side's LAN to the wan. */
  udpBlocked?: boolean;
}

export const WAN_SERVER = '198.18.0.1';
export const WAN_SERVER_2 = '198.18.0.2';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function inNs(ns: string, cmd: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

export class NetLab {
  readonly wan: string;
  readonly ra: string;
  readonly ha: string;
  readonly rb: string;
  readonly hb: string;
  private readonly procs: ChildProcess[] = [];
  private readonly prefix: string;

  private constructor(prefix: string) {
    this.prefix = prefix;
    this.wan = `${prefix}w`;
    this.ra = `${prefix}ra`;
    this.ha = `${prefix}ha`;
    this.rb = `${prefix}rb`;
    this.hb = `${prefix}hb`;
  }

  static create(a: SideOptions, b: SideOptions): NetLab {
    const lab = new NetLab(`bl${process.pid % 100000}x${Math.floor(Math.random() * 1000)}`);
    try {
      lab.build(a, b);
    } catch (err) {
      lab.destroy();
      throw new Error(`building the NAT lab failed (needs root, iproute2 and iptables): ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`);
    }
    return lab;
  }

  private build(a: SideOptions, b: SideOptions): void {
    const p = this.prefix;
    for (const ns of [this.wan, this.ra, this.ha, this.rb, this.hb]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('-n', this.wan, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.wan, 'link', 'set', 'br0', 'up');
    ip('-n', this.wan, 'addr', 'add', `${WAN_SERVER}/24`, 'dev', 'br0');
    ip('-n', this.wan, 'addr', 'add', `${WAN_SERVER_2}/24`, 'dev', 'br0');
    const side = (router: string, host: string, n: 1 | 2, opts: SideOptions): void => {
      const wanIf = `${p}${n}w`;
      const brIf = `${p}${n}b`;
      const lanIf = `${p}${n}l`;
      const hostIf = `${p}${n}h`;
      ip('link', 'add', wanIf, 'type', 'veth', 'peer', 'name', brIf);
      ip('link', 'set', wanIf, 'netns', router);
      ip('link', 'set', brIf, 'netns', this.wan);
      ip('-n', this.wan, 'link', 'set', brIf, 'master', 'br0', 'up');
      ip('-n', router, 'addr', 'add', `198.18.0.${10 + n}/24`, 'dev', wanIf);
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

  /** Drops (or, with `false`, lets through again) all UDP through a router: a cut direct path. */
  cutUdp(router: string, cut = true): void {
    inNs(router, 'iptables', cut ? '-I' : '-D', 'FORWARD', '-p', 'udp', '-j', 'DROP');
  }

  /** Starts a process inside a namespace; it is killed by destroy(). */
  spawn(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { env: { ...process.env, BEAM_SERVER: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(child);
    return child;
  }

  /** Runs node with an inline ES module inside a namespace; resolves with its stdout lines parsed as JSON. */
  node(ns: string, script: string, onLine?: (line: Record<string, unknown>) => void): Promise<Array<Record<string, unknown>>> {
    const child = this.spawn(ns, process.execPath, ['--input-type=module', '-e', script]);
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

  destroy(): void {
    for (const child of this.procs) if (child.exitCode === null) child.kill('SIGKILL');
    for (const ns of [this.wan, this.ra, this.ha, this.rb, this.hb]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // never created
      }
    }
  }
}
