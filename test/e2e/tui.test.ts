/**
 * The terminal UI under a real pseudo-terminal (util-linux `script`): a
 * spinner, the link with a QR code that encodes it, and the live visitor list;
 * `--json` on a terminal stays pure JSON.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import qrcode from 'qrcode-terminal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BIN, ROOT, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
});
afterAll(async () => {
  await server?.proc.kill();
  await origin?.close();
});

/** `beam` with a pseudo-terminal as its stdout. */
class OnTerminal {
  readonly child: ChildProcess;
  output = '';
  private waiters: Array<{ test: (s: string) => boolean; resolve: () => void }> = [];
  readonly exited: Promise<void>;

  constructor(args: string[]) {
    const command = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // -q: no banner; -f: flush as written; -e: the child's exit status; -c: the command.
    this.child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: ROOT,
      env: { ...process.env, TERM: 'xterm-256color', BEAM_SERVER: '' },
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.output += d.toString();
      for (const w of [...this.waiters]) {
        if (w.test(this.output)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  /** Resolves once the output passes `test`; rejects with the output's tail if the process exits or `ms` pass first. */
  until(test: (s: string) => boolean, ms = 20_000): Promise<void> {
    if (test(this.output)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        const at = this.waiters.findIndex((w) => w.resolve === done);
        if (at >= 0) this.waiters.splice(at, 1);
        reject(new Error(`${why}; output: ${JSON.stringify(this.output.slice(-3000))}`));
      };
      const timer = setTimeout(() => fail(`not seen within ${ms} ms`), ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push({ test, resolve: done });
      void this.exited.then(() => fail('exited'));
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) process.kill(-this.child.pid!, 'SIGTERM');
    await this.exited;
  }
}

const plain = (s: string): string => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');

describe('on a terminal', () => {
  it('shows a spinner, then the link and a QR code that encodes it, then visitors live with their path and RTT', async () => {
    const t = new OnTerminal(['http', String(origin.port), '--server', server.url, '--no-inspect']);
    try {
      await t.until((s) => s.includes('Press Ctrl+C to stop.'));
      expect(t.output).toMatch(/⠋\S* Connecting to http:\/\/127\.0\.0\.1:\d+…/);
      const text = plain(t.output);
      const url = /Link\s+(http:\/\/\S+)/.exec(text)?.[1] as string;
      expect(url).toMatch(/^http:\/\/[a-z]+-[a-z]+-\d{3}\.localhost:\d+\/$/);
      let expected = '';
      qrcode.generate(url, { small: true }, (code) => (expected = code));
      const indented = expected
        .replace(/\n$/, '')
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n');
      expect(text).toContain(indented);

      expect((await request(server.port, new URL(url).host, '/tui')).status).toBe(200);
      // The list is redrawn as the path changes (the relay first, then direct standing by beside it, and the RTT
      // a ping later, in either order): the latest drawing must come to show the visitor with its path and RTT.
      const row = /● \S{8}\s+gateway\s+gateway via (direct|turn|relay)(?: \([a-z, ]+ standing by\))?\s+[\d.]+ ms/;
      let list = '';
      await t.until((s) => {
        list = plain(s).split('Visitors (1)').at(-1) ?? '';
        return plain(s).includes('Visitors (1)') && row.test(list);
      });
      expect(list).toMatch(row);
    } finally {
      await t.stop();
    }
  });

  it('beam connect on a terminal: the share it reached, the local address, and a path line redrawn in place as it changes', async () => {
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server, ['--no-inspect']);
    const link = (await agent.proc.waitFor('ready'))['link'] as string;
    const t = new OnTerminal(['connect', link, '--server', server.url]);
    try {
      // The path line, redrawn in place (erase the line, write it again) once the round-trip time is measured.
      await t.until((s) => /\r\x1b\[2K {2}Path: {2}(direct|relay|direct \(TURN\))[^\n]*, [\d.]+ ms/.test(s));
      const text = plain(t.output);
      expect(text).toMatch(new RegExp(`Connected to ${agent.name} \\(http://${agent.name}\\.localhost:\\d+/\\)`));
      expect(text).toMatch(/ {2}Local: http:\/\/127\.0\.0\.1:\d+\//);
      expect(text).toContain('Press Ctrl+C to stop.');
    } finally {
      await t.stop();
      await agent.proc.kill();
    }
  });

  it('--json stays pure JSON on a terminal: no spinner, colours or QR code', async () => {
    const t = new OnTerminal(['http', String(origin.port), '--server', server.url, '--json', '--no-inspect']);
    try {
      await t.until((s) => s.includes('"event":"ready"'));
      await t.stop();
      const lines = t.output
        .split('\n')
        .map((l) => l.replace(/\r$/, ''))
        .filter(Boolean);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
      expect(t.output).not.toMatch(/\x1b|[▄▀█⠋]/);
    } finally {
      await t.stop();
    }
  });
});
