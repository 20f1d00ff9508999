/**
 * Real services for tests and benchmarks of TCP shares: PostgreSQL and Redis
 * from Debian, each started on a free loopback port with its own data, and
 * stopped with the returned handle.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * The repository, where Beam's processes run: the first folder up from here
 * with bin/beam.js (this file runs from test/helpers/ under vitest, and from
 * dist/test/helpers/ when a bench script imports it).
 */
const ROOT = ((): string => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'bin', 'beam.js'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('bin/beam.js not found above test/helpers');
    dir = up;
  }
  return dir;
})();

export interface Service {
  port: number;
  /** Its process, for CPU accounting (undefined if it never started). */
  pid: number;
  stop(): void;
}

/** A numeric command-line option of a bench script: `--name N`, else `def`. */
export function numberArg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts a process and resolves once a line of its output matches `ready`. */
export function startUntil(cmd: string, args: string[], ready: RegExp): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let output = '';
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        output += `${line}\n`;
        if (ready.test(line)) resolve(child);
      });
    }
    child.once('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${output.slice(-2000)}`)));
  });
}

/** A throwaway PostgreSQL cluster (trust auth, user postgres) on 127.0.0.1. Needs root (it runs as postgres). */
export async function startPostgres(): Promise<Service> {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql') : [];
  const binDir = versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => existsSync(`${d}/initdb`));
  if (!binDir) throw new Error('PostgreSQL is not installed: run .ci/setup');
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-pg-'));
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  chownSync(dir, uid, gid);
  execFileSync('runuser', ['-u', 'postgres', '--', path.join(binDir, 'initdb'), '-D', dir, '--auth=trust', '-U', 'postgres'], { stdio: 'ignore' });
  const port = await freePort();
  const child = await startUntil(
    'runuser',
    ['-u', 'postgres', '--', path.join(binDir, 'postgres'), '-D', dir, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
    /ready to accept connections/,
  );
  return {
    port,
    pid: child.pid ?? 0,
    stop() {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A redis-server without persistence on 127.0.0.1. */
export async function startRedis(): Promise<Service> {
  const port = await freePort();
  const child = await startUntil(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    /Ready to accept connections/,
  );
  return { port, pid: child.pid ?? 0, stop: () => void child.kill('SIGKILL') };
}

const BIN = path.join(ROOT, 'bin/beam.js');

/**
 * Runs `beam <argv>` (the built CLI), adds it to `children` for the caller to
 * kill, and resolves with its first JSON event named `event`.
 */
export function beamEvent(argv: string[], event: string, children: ChildProcess[]): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [BIN, ...argv], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BEAM_SERVER: '' } });
  children.push(child);
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (e['event'] === event) resolve(e);
      } catch {
        // not JSON
      }
    });
    child.once('exit', (code) => reject(new Error(`beam ${argv[0]} exited ${code}`)));
  });
}

/** Starts a Beam process (or any JSON-lines one) and resolves with its first event that `match`es. */
export function startJson(
  cmd: string,
  argv: string[],
  match: (e: Record<string, unknown>) => boolean,
): Promise<{ child: ChildProcess; event: Record<string, unknown> }> {
  const child = spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BEAM_SERVER: '' } });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const event = JSON.parse(line) as Record<string, unknown>;
        if (match(event)) resolve({ child, event });
      } catch {
        // not JSON
      }
    });
    child.once('exit', (code) => reject(new Error(`${argv.join(' ')} exited with ${code}`)));
  });
}
