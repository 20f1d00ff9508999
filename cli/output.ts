/**
 * What the CLI tells its user. Human lines on stdout, or with --json one JSON
 * event per line (the contract in docs/cli.md: ready first, closed last). Logs go
 * to stderr through pino, never here.
 */
export type CliEvent =
  | {
      event: 'ready';
      name: string;
      url: string;
      link?: string;
      lan?: string;
      /** beam --lan: the mDNS name the share is announced under (`<name>._beam._tcp.local`). */
      announced?: string;
      /** beam --lan, an HTTP share: its link on the LAN by name, `http://<name>.local:<port>/`. */
      lanUrl?: string;
      /** beam connect: found on this network by mDNS, and the agent's peer ID. */
      found?: 'lan';
      peer?: string;
      inspect?: string;
      origin: string;
      server: string;
      resumed?: boolean;
      kind?: 'tcp' | 'udp';
      /** beam --tls: the local authority teammates trust once. */
      ca?: { file: string; fingerprint: string; url: string };
      /** The network the share goes through, when not a Beam server (`--via libp2p`): its link is for beam connect only. */
      via?: 'libp2p';
    }
  | { event: 'session' | 'path'; id: string; visitor: string; path: string; via: string; rtt?: number; standby?: string[]; after?: number }
  | { event: 'session-closed'; id: string; path: string }
  | { event: 'origin-unreachable'; origin: string; code: string }
  | { event: 'origin-ready'; origin: string }
  | { event: 'detected'; framework: string; port: number; from: 'package.json' | 'listening' }
  | { event: 'reconnecting'; reason: string }
  /** `beam run`: the command started, and the command exited (its code is Beam's). */
  | { event: 'started'; command: string; pid: number | undefined }
  | { event: 'exited'; code: number; signal?: string }
  | { event: 'error'; code: string; message: string }
  | { event: 'closed' };

import { trustSteps } from '../app/local-ca.js';

export interface Output {
  emit(event: CliEvent): void;
  line(text: string): void;
}

/**
 * `label`: the share's label in beam.yml (`beam start`): JSON events carry it
 * as `share`, and human lines start with `[label]`.
 */
export function createOutput(json: boolean, out: NodeJS.WritableStream = process.stdout, label?: string): Output {
  if (json) {
    return {
      emit: (event) => out.write(`${JSON.stringify(label === undefined ? event : { ...event, share: label })}\n`),
      line: () => {},
    };
  }
  const write = (text: string): void => {
    out.write(
      `${
        label === undefined
          ? text
          : text
              .split('\n')
              .map((l) => `[${label}] ${l}`)
              .join('\n')
      }\n`,
    );
  };
  return {
    emit: (event) => {
      let text = describe(event);
      // `beam start` says how to stop once, for all its shares, not once a share.
      if (label !== undefined && event.event === 'ready') text = text?.replace(/\nPress Ctrl\+C to stop\.$/, '');
      if (text) write(text);
    },
    line: write,
  };
}

function via(e: { path: string; via: string; rtt?: number; standby?: string[] }): string {
  const standing = e.standby?.length ? `${e.standby.join(', ')} standing by` : '';
  const how = e.path === e.via ? (standing ? `${e.path} (${standing})` : e.path) : `${e.path} (${e.via} to the agent${standing ? `, ${standing}` : ''})`;
  return e.rtt !== undefined ? `${how}, ${e.rtt} ms` : how;
}

/** The plain line for an event, or none. */
export function describe(e: CliEvent): string | undefined {
  switch (e.event) {
    case 'ready':
      if (e.via === 'libp2p' && e.link && e.resumed) return `The share moved to another relay; its link now: beam connect ${e.link}`;
      if (e.via === 'libp2p' && e.link)
        return [
          `Sharing ${e.kind ? `${e.kind.toUpperCase()} ` : ''}${e.origin} through libp2p (no Beam server)`,
          `  beam connect ${e.link}`,
          ...(e.inspect ? [`  Inspect: ${e.inspect}`] : []),
          'Press Ctrl+C to stop.',
        ].join('\n');
      return e.resumed
        ? `Reconnected: ${e.url} is back.`
        : [
            `Sharing ${e.kind ? `${e.kind.toUpperCase()} ` : ''}${e.origin}`,
            `  Link:  ${e.url}`,
            ...(e.lan ? [`  LAN:   ${e.lan}`] : []),
            ...(e.link ? [`  beam connect ${e.link}`] : []),
            ...(e.lanUrl ? [`  On this network: ${e.lanUrl}`] : []),
            ...(e.announced ? [`  On this network: beam connect ${e.name}`] : []),
            ...(e.inspect ? [`  Inspect: ${e.inspect}`] : []),
            ...(e.ca ? trustSteps(e.ca.file, e.ca.fingerprint, e.ca.url) : []),
            'Press Ctrl+C to stop.',
          ].join('\n');
    case 'session':
      return `+ visitor ${e.id.slice(0, 8)} (${e.visitor}) via ${via(e)}`;
    case 'path':
      return `~ visitor ${e.id.slice(0, 8)} now via ${via(e)}`;
    case 'session-closed':
      return `- visitor ${e.id.slice(0, 8)} left`;
    case 'origin-unreachable':
      return `! Nothing is listening on ${e.origin} (${e.code}). Start your server there; Beam forwards as soon as it answers.`;
    case 'origin-ready':
      return `✓ ${e.origin} is up: the link serves it now.`;
    case 'detected':
      return e.from === 'package.json' ? `Detected ${e.framework} in package.json: port ${e.port}.` : `Found a server listening on port ${e.port}.`;
    case 'started':
      return `Running ${e.command} (BEAM_URL is set to the link)`;
    case 'exited':
      return `The command exited with code ${e.code}${e.signal ? ` (${e.signal})` : ''}.`;
    case 'reconnecting':
      return `! Lost the Beam server (${e.reason}); reconnecting...`;
    case 'error':
      return `Error ${e.code}: ${e.message}`;
    case 'closed':
      return 'Stopped.';
  }
}
