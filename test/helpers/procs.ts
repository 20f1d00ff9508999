/**
 * Real processes for end-to-end tests: `beam serve` and `beam http` run from
 * the built CLI (bin/beam.js), exactly as a user runs them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/beam.js');
/** How long waitFor waits for an event by default: under the 60 s test timeout, so the failure names the event. */
export const WAIT_FOR_MS = 45_000;

export interface JsonEvent {
  event: string;
  [key: string]: unknown;
}

export class BeamProcess {
  /** Processes not yet exited: a failed test prints what they logged (test/helpers/on-failure.ts). */
  static readonly live = new Set<BeamProcess>();
  /** The last processes that exited with a code other than 0 (a crash among them): a failed test prints them too. */
  static readonly failedExits: Array<{ process: BeamProcess; code: number; at: number }> = [];
  readonly args: string[];
  readonly child: ChildProcess;
  readonly events: JsonEvent[] = [];
  stderr = '';
  private waiters: Array<{ match: (e: JsonEvent) => boolean; resolve: (e: JsonEvent) => void }> = [];
  readonly exited: Promise<number | null>;
  /** Log entries (pino JSON lines on stderr). */
  readonly logs: Array<Record<string, unknown>> = [];
  private logWaiters: Array<{ match: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }> = [];

  /** `netns`: run inside that network namespace (test/helpers/netlab.ts); `cwd`: the working directory (default the repository). */
  constructor(args: string[], env: NodeJS.ProcessEnv = {}, options: { netns?: string; cwd?: string } = {}) {
    this.args = args;
    const [cmd, argv] = options.netns ? ['ip', ['netns', 'exec', options.netns, process.execPath, BIN, ...args]] : [process.execPath, [BIN, ...args]];
    this.child = spawn(cmd as string, argv as string[], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, BEAM_SERVER: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let event: JsonEvent;
      try {
        event = JSON.parse(line) as JsonEvent;
      } catch {
        event = { event: 'text', line };
      }
      this.events.push(event);
      for (const w of [...this.waiters]) {
        if (w.match(event)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(event);
        }
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    // pino writes one JSON object a line on stderr.
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      this.logs.push(entry);
      for (const w of [...this.logWaiters]) {
        if (w.match(entry)) {
          this.logWaiters.splice(this.logWaiters.indexOf(w), 1);
          w.resolve(entry);
        }
      }
    });
    BeamProcess.live.add(this);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        BeamProcess.live.delete(this);
        if (code !== null && code !== 0) {
          BeamProcess.failedExits.push({ process: this, code, at: performance.now() });
          if (BeamProcess.failedExits.length > 10) BeamProcess.failedExits.shift();
        }
        resolve(code);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Resolves with the first event (past or future) that matches; rejects if
   * the process exits first, or after `timeoutMs` with what it said so far
   * (so a missing event names itself instead of timing the whole test out).
   */
  waitFor(match: string | ((e: JsonEvent) => boolean), fromIndex = 0, timeoutMs = WAIT_FOR_MS): Promise<JsonEvent> {
    const fn = typeof match === 'string' ? (e: JsonEvent) => e.event === match : match;
    const seen = this.events.slice(fromIndex).find(fn);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.match !== fn);
        reject(
          new Error(
            `no ${typeof match === 'string' ? `"${match}" ` : ''}event within ${timeoutMs} ms; stdout: ${JSON.stringify(this.events)}; stderr: ${this.stderr.slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push({
        match: fn,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`beam exited (${code}) before the event; stdout: ${JSON.stringify(this.events)}; stderr: ${this.stderr.slice(-2000)}`));
      });
    });
  }

  /** Resolves with the first log entry (past or future) whose fields include `fields`. */
  /** The first log entry with all these fields (or that `fields` accepts), logged already or to come. */
  waitForLog(fields: Record<string, unknown> | ((e: Record<string, unknown>) => boolean)): Promise<Record<string, unknown>> {
    const match = typeof fields === 'function' ? fields : (e: Record<string, unknown>): boolean => Object.entries(fields).every(([k, v]) => e[k] === v);
    const seen = this.logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.logWaiters.push({ match, resolve });
      void this.exited.then((code) =>
        reject(
          new Error(
            `beam exited (${code}) before logging ${typeof fields === 'function' ? 'a matching entry' : JSON.stringify(fields)}; stderr: ${this.stderr.slice(-2000)}`,
          ),
        ),
      );
    });
  }

  /** Resident memory in bytes, from /proc. */
  rss(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return Number(m?.[1] ?? 0) * 1024;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/**
 * Matches the first 'session' or 'path' event that puts a visitor on `path`.
 * On a busy machine the relay (started at DIRECT_PATH_TIMEOUT_MS) can come up
 * before a slow DTLS handshake finishes: then direct follows as a 'path' event.
 */
export function onPath(path: string, visitor?: string): (e: JsonEvent) => boolean {
  return (e) => (e.event === 'session' || e.event === 'path') && e['path'] === path && (visitor === undefined || e['visitor'] === visitor);
}

/** `beam serve --tls-cert/--tls-key` for `domain` on a loopback port (its `ready` event says which). */
export function tlsServe(domain: string, certs: { certFile: string; keyFile: string }): BeamProcess {
  return new BeamProcess([
    'serve',
    '--port',
    '0',
    '--host',
    '127.0.0.1',
    '--domain',
    domain,
    '--tls-cert',
    certs.certFile,
    '--tls-key',
    certs.keyFile,
    '--json',
    '--log-level',
    'warn',
  ]);
}

export interface ServerHandle {
  proc: BeamProcess;
  port: number;
  url: string;
}

export async function startServer(extra: string[] = []): Promise<ServerHandle> {
  const proc = new BeamProcess(['serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'warn', ...extra]);
  const ready = await proc.waitFor('ready');
  const port = ready['port'] as number;
  return { proc, port, url: `http://127.0.0.1:${port}` };
}

/** `beam serve` with `args`, which it should refuse: its error event's code and message, and its exit code. */
export async function serveRefusal(args: string[]): Promise<{ code: unknown; message: string; exit: number | null }> {
  const proc = new BeamProcess(['serve', '--port', '0', '--host', '127.0.0.1', '--json', ...args]);
  const error = await proc.waitFor('error');
  return { code: error['code'], message: String(error['message']), exit: await proc.exited };
}

export interface AgentHandle {
  proc: BeamProcess;
  name: string;
  url: string;
  /** Host header for requests to this share through 127.0.0.1. */
  host: string;
}

export async function startAgent(target: string | number, server: ServerHandle, extra: string[] = []): Promise<AgentHandle> {
  const proc = new BeamProcess(['http', String(target), '--server', server.url, '--json', ...extra]);
  const ready = await proc.waitFor('ready');
  const name = ready['name'] as string;
  return { proc, name, url: ready['url'] as string, host: `${name}.localhost:${server.port}` };
}
