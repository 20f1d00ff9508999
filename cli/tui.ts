/**
 * The terminal UI, when stdout is a terminal: a spinner while connecting,
 * then the link with a QR code for phones, the inspector's URL, and a live
 * list of visitors (path and RTT) redrawn in place at the bottom. Other
 * lines print above that list. Without a terminal the CLI prints plain lines
 * (cli/output.ts), and `--json` prints events only.
 */

import qrcode from 'qrcode-terminal';
import { trustSteps } from '../app/local-ca.js';
import { type CliEvent, describe, type Output } from './output.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const SPINNER_MS = 80;
/** Visitors listed at once; the rest are counted. */
const MAX_LISTED = 10;

const dim = (s: string): string => `\x1b[2m${s}\x1b[22m`;
const bold = (s: string): string => `\x1b[1m${s}\x1b[22m`;
const green = (s: string): string => `\x1b[32m${s}\x1b[39m`;
const cyan = (s: string): string => `\x1b[36m${s}\x1b[39m`;

interface Visitor {
  id: string;
  visitor: string;
  path: string;
  via: string;
  standby?: string[] | undefined;
  rtt: number | undefined;
}

export interface TerminalOutput extends Output {
  /** Shows a spinner with `text` until the next line or event. */
  progress(text: string): void;
}

function qr(text: string): string {
  let out = '';
  qrcode.generate(text, { small: true }, (code) => (out = code));
  return out;
}

export function createTerminalOutput(stream: NodeJS.WriteStream = process.stdout): TerminalOutput {
  const visitors = new Map<string, Visitor>();
  /** Lines of the live region now on screen. */
  let drawn = 0;
  let spinner: NodeJS.Timeout | undefined;

  const clearRegion = (): void => {
    if (spinner) {
      clearInterval(spinner);
      spinner = undefined;
      stream.write('\r\x1b[2K');
    }
    if (drawn > 0) stream.write(`\x1b[${drawn}A\x1b[J`);
    drawn = 0;
  };

  const drawRegion = (): void => {
    if (visitors.size === 0) return;
    const lines = [bold(`Visitors (${visitors.size})`)];
    for (const v of [...visitors.values()].slice(0, MAX_LISTED)) {
      const how = `${v.path === v.via ? v.path : `${v.path} ${dim(`via ${v.via}`)}`}${v.standby?.length ? dim(` (${v.standby.join(', ')} standing by)`) : ''}`;
      lines.push(`  ${green('●')} ${v.id.slice(0, 8)}  ${v.visitor.padEnd(7)}  ${how}${v.rtt !== undefined ? dim(`  ${v.rtt} ms`) : ''}`);
    }
    if (visitors.size > MAX_LISTED) lines.push(dim(`  … and ${visitors.size - MAX_LISTED} more`));
    stream.write(`${lines.join('\n')}\n`);
    drawn = lines.length;
  };

  /** Prints lines above the live region. */
  const print = (text: string): void => {
    clearRegion();
    stream.write(`${text}\n`);
    drawRegion();
  };

  const ready = (e: Extract<CliEvent, { event: 'ready' }>): string => {
    if (e.resumed && e.via === 'libp2p' && e.link) return `${green('✓')} The share moved to another relay; its link now: ${cyan(`beam connect ${e.link}`)}`;
    if (e.resumed) return `${green('✓')} Reconnected: ${e.url} is back.`;
    // A libp2p share's link is for beam connect alone: no browser link, no QR code for a phone.
    if (e.via === 'libp2p' && e.link)
      return [
        `${green('✓')} Sharing ${e.kind ? `${e.kind.toUpperCase()} ` : ''}${bold(e.origin)} through libp2p (no Beam server)`,
        '',
        `  Connect  ${cyan(`beam connect ${e.link}`)}`,
        ...(e.inspect ? [`  Inspect  ${e.inspect}`] : []),
        '',
        dim('Press Ctrl+C to stop.'),
      ].join('\n');
    const rows = [
      `${green('✓')} Sharing ${e.kind ? `${e.kind.toUpperCase()} ` : ''}${bold(e.origin)}`,
      '',
      `  Link     ${cyan(e.url)}`,
      ...(e.lan ? [`  LAN      ${e.lan}`] : []),
      ...(e.inspect ? [`  Inspect  ${e.inspect}`] : []),
      ...(e.link ? [`  Connect  ${dim(`beam connect ${e.link}`)}`] : []),
      ...(e.lanUrl ? [`  On LAN   ${e.lanUrl}`] : []),
      ...(e.announced ? [`  On LAN   ${dim(`beam connect ${e.name}`)}`] : []),
      ...(e.ca ? ['', ...trustSteps(e.ca.file, e.ca.fingerprint, e.ca.url).map((l) => `  ${l}`)] : []),
    ];
    // A phone scans the browser link; TCP and UDP shares are for `beam connect`, not phones.
    if (!e.kind)
      rows.push(
        '',
        ...qr(e.url)
          .replace(/\n$/, '')
          .split('\n')
          .map((l) => `  ${l}`),
      );
    rows.push('', dim('Press Ctrl+C to stop.'));
    return rows.join('\n');
  };

  return {
    progress(text) {
      clearRegion();
      let i = 0;
      const frame = (): void => {
        stream.write(`\r\x1b[2K${cyan(FRAMES[i++ % FRAMES.length] as string)} ${text}`);
      };
      frame();
      spinner = setInterval(frame, SPINNER_MS);
      spinner.unref();
    },
    line: print,
    emit(event) {
      switch (event.event) {
        case 'ready':
          print(ready(event));
          return;
        case 'session':
        case 'path':
          clearRegion();
          visitors.set(event.id, { id: event.id, visitor: event.visitor, path: event.path, via: event.via, rtt: event.rtt, standby: event.standby });
          drawRegion();
          return;
        case 'session-closed':
          clearRegion();
          visitors.delete(event.id);
          drawRegion();
          return;
        default: {
          const text = describe(event);
          if (text) print(text);
        }
      }
    },
  };
}
