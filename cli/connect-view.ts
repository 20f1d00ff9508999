/**
 * What `beam connect` tells its user: the visitor's side. Which share it
 * reached, the local address to use, and the path with its round-trip time;
 * on a terminal the path line is redrawn in place when the path changes (and
 * as the RTT moves), in plain lines each change is a line, and `--json`
 * prints the events (ready first, then session, path..., closed).
 */
import type { ConnectionPath } from '../app/connect.js';
import { createOutput } from './output.js';

export interface ConnectView {
  ready(info: {
    share: string;
    url: string;
    origin: string;
    server: string;
    verified: boolean;
    lan: boolean;
    peer: string | undefined;
    /** The network the share is reached through; 'server' unless a beam+libp2p:// link. */
    via?: 'server' | 'libp2p';
    path: ConnectionPath | undefined;
  }): void;
  path(info: ConnectionPath, first: boolean): void;
  /** The RTT now (terminal only: the path line shows it live). */
  rtt(ms: number | undefined): void;
  closed(): void;
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

/** `direct, 1.2 ms`: the path and, once measured, its round-trip time. */
export function pathText(path: string, rtt: number | undefined): string {
  const label = path === 'turn' ? 'direct (TURN)' : path === 'relay' ? 'relay (end-to-end encrypted)' : path;
  return rtt === undefined ? label : `${label}, ${round(rtt)} ms`;
}

export function createConnectView(json: boolean, stream: NodeJS.WriteStream = process.stdout): ConnectView {
  if (json) {
    const out = createOutput(true, stream);
    let share = '';
    return {
      ready(info) {
        share = info.share;
        out.emit({
          event: 'ready',
          name: info.share,
          url: info.url,
          origin: info.origin,
          server: info.server,
          ...(info.lan ? { found: 'lan' as const } : {}),
          ...(info.peer ? { peer: info.peer } : {}),
          ...(info.via === 'libp2p' ? { via: 'libp2p' as const } : {}),
        });
      },
      path(info, first) {
        out.emit({
          event: first ? 'session' : 'path',
          id: share,
          visitor: 'cli',
          path: info.path,
          via: info.path,
          ...(info.rtt !== undefined ? { rtt: round(info.rtt) } : {}),
          after: info.afterMs,
        });
      },
      rtt() {},
      closed() {
        out.emit({ event: 'closed' });
      },
    };
  }
  const tty = stream.isTTY === true;
  let current: ConnectionPath | undefined;
  let shownRtt: number | undefined;
  const write = (text: string): void => {
    stream.write(text);
  };
  const statusLine = (): string => `  Path:  ${current ? pathText(current.path, shownRtt) : 'connecting…'}`;
  return {
    ready(info) {
      current = info.path;
      shownRtt = info.path?.rtt;
      const lines = [`Connected to ${info.share} (${info.origin})`, `  Local: ${info.url}`];
      if (info.lan) lines.push(`  Found on this network (mDNS) at ${info.server}`);
      if (info.via === 'libp2p') lines.push(`  Through libp2p: hole punched via ${info.server}; the agent proved ${info.peer ?? ''}`);
      if (!info.verified && info.lan) lines.push(`! Found by name: the agent's key ${info.peer ?? ''} is taken on the LAN's word; its full link pins it.`);
      else if (!info.verified) lines.push("! This link names no peer ID (#peer=...): the agent's identity is taken on the server's word.");
      lines.push('Press Ctrl+C to stop.');
      // On a terminal the path line stays last, redrawn in place; in plain lines it is one line, and each change another.
      write(tty ? `${lines.join('\n')}\n${statusLine()}` : `${lines.slice(0, 2).join('\n')}\n${statusLine()}\n${lines.slice(2).join('\n')}\n`);
    },
    path(info, first) {
      current = info;
      shownRtt = info.rtt;
      if (tty) write(`\r\x1b[2K${statusLine()}`);
      else if (!first) write(`~ now via ${pathText(info.path, info.rtt)}\n`);
    },
    rtt(ms) {
      if (!tty || ms === undefined || shownRtt === ms) return;
      shownRtt = ms;
      write(`\r\x1b[2K${statusLine()}`);
    },
    closed() {
      write(tty ? '\nStopped.\n' : 'Stopped.\n');
    },
  };
}
