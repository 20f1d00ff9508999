/**
 * Side by side, in one run (issue 18's table): what a visitor feels through
 * each path to the same origin on this machine.
 *
 *   direct     the origin itself
 *   bare proxy Node's http server and client in one process, no Beam (bench/diag/bare-proxy.ts);
 *              and the same with undici's pool as its origin client, as Beam's agent has it:
 *              what one process with no Beam work reaches here
 *   embedded   `beam <port>` with no server: its gateway reaches the agent in memory; and the same
 *              with `--no-inspect` (Beam's rows otherwise run as users run them, the inspector on)
 *   gateway    `beam serve` + `beam http --server`: a gateway visitor, its link to the agent on the
 *              relay (direct WebRTC standing by); and `--gateway-relay never`: that link on WebRTC alone
 *   ssh -R     OpenSSH remote forwarding (sshd with its own config on loopback)
 *   localtunnel  its server and client, when LT_SERVER_DIR names a checkout of localtunnel/server
 *                (LT_NODE: the Node that runs them, for a bench on Node 24 or later)
 *                (the client: `lt` on PATH, or LT_CLIENT)
 *
 * For each: the first response a new visitor gets once the share is up (a
 * new share each repetition, and FIRSTS more new shares that answer only
 * that first request: three samples made the median one start's luck), the p50 of sequential requests on one
 * keep-alive connection (2 ms apart), 1 KiB req/s at 10 and 100 connections
 * (wrk), and a 100 MiB download (curl; the median of DOWNLOADS in a row, on
 * every path alike: one transfer also measures how long a process takes to
 * warm its code for bulk). Then the ratios the issue sets, and
 * `beam connect`: from the process start to its first response.
 *
 *   npm run build && node dist/bench/first-byte.js [--reps 3] [--seconds 5] [--warmup 2] [--firsts 6]
 *
 * Needs wrk, curl, ssh and sshd (Debian: apt-get install -y wrk curl openssh-server).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, numberArg, startJson } from '../test/helpers/services.js';
import { atLeast, atMost, reportTargets } from './targets.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const REPS = numberArg('--reps', 3);
const SECONDS = numberArg('--seconds', 5);
const DOWNLOAD = 100 * 1024 * 1024;
/** Downloads in a row per repetition; the row keeps their median. */
const DOWNLOADS = numberArg('--downloads', 3);
/**
 * wrk runs this long at 10 connections, untimed, before the timed runs: a
 * path's steady rate, not its code's first seconds. Every path gets it. A
 * JavaScript path (Beam, localtunnel, the bare proxies) runs its first
 * seconds of load in V8's lower tiers: the embedded default made 3,150 and
 * 3,937 req/s in its first 5 s and 4,600-5,192 in the next (2026-12-06).
 */
const WARMUP_SECONDS = numberArg('--warmup', 2);
/** New shares per path, beyond the repetitions', that time only their first response. */
const FIRSTS = numberArg('--firsts', 6);
const node = process.execPath;
/** localtunnel's server loads with `-r esm`, which Node 24 and later refuse: LT_NODE names a Node that runs it (default this one). */
const ltNode = process.env['LT_NODE'] ?? node;
const BEAM = ['bin/beam.js'];

interface Target {
  /** Where requests go (127.0.0.1:port). */
  port: number;
  /** The Host header, when it names a share. */
  host?: string | undefined;
}

interface Path {
  name: string;
  /** Brings the path up (a new share, a new tunnel): resolves once it says it is ready. */
  start(): Promise<{ target: Target; stop(): Promise<void> }>;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const spread = (xs: number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

/** One request on its own connection: milliseconds to the end of the body. */
function timedGet(t: Target, pathname: string, agent: http.Agent | false = false): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: t.port, path: pathname, agent, headers: t.host ? { host: t.host } : {} }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error(`${pathname}: ${res.statusCode}`))));
    });
    req.on('error', reject);
  });
}

async function sequentialP50(t: Target): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    times.push(await timedGet(t, '/1k', agent));
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  agent.destroy();
  return median(times.slice(20));
}

async function wrk(t: Target, connections: number, seconds = SECONDS): Promise<number> {
  const { stdout } = await run('wrk', [
    '-t1',
    `-c${connections}`,
    `-d${seconds}s`,
    ...(t.host ? ['-H', `Host: ${t.host}`] : []),
    `http://127.0.0.1:${t.port}/1k`,
  ]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} failed responses`);
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
}

async function curlMBps(t: Target): Promise<number> {
  const { stdout } = await run('curl', [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{speed_download} %{size_download}',
    ...(t.host ? ['-H', `Host: ${t.host}`] : []),
    `http://127.0.0.1:${t.port}/bytes/${DOWNLOAD}`,
  ]);
  const [speed, size] = stdout.trim().split(' ').map(Number);
  if (size !== DOWNLOAD) throw new Error(`the download returned ${size} bytes`);
  return (speed as number) / 1e6;
}

function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`nothing listens on ${port}`));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

function stopper(...children: ChildProcess[]): () => Promise<void> {
  return async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
  };
}

/** sshd on loopback with its own config and keys, key auth only. */
async function startSshd(): Promise<{ port: number; key: string; child: ChildProcess }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-sshd-'));
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'user')]);
  await run('cp', [path.join(dir, 'user.pub'), path.join(dir, 'authorized_keys')]);
  await run('mkdir', ['-p', '/run/sshd']);
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'AllowTcpForwarding yes',
      'StrictModes no',
      'UsePAM no',
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  await waitForPort(port);
  return { port, key: path.join(dir, 'user'), child };
}

async function main(): Promise<void> {
  const origin = await startJson(node, [path.join(here, 'origin.js')], (e) => typeof e['port'] === 'number');
  const originPort = origin.event['port'] as number;
  const server = await startJson(
    node,
    [...BEAM, 'serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'error'],
    (e) => e['event'] === 'ready',
  );
  const serverPort = server.event['port'] as number;
  // The same server with its gateway's link on direct WebRTC alone (the default carries it on the relay, direct standing by).
  const directServer = await startJson(
    node,
    [...BEAM, 'serve', '--port', '0', '--host', '127.0.0.1', '--gateway-relay', 'never', '--json', '--log-level', 'error'],
    (e) => e['event'] === 'ready',
  );
  const directServerPort = directServer.event['port'] as number;
  const sshd = await startSshd();
  const ltDir = process.env['LT_SERVER_DIR'];

  const paths: Path[] = [
    { name: 'direct to origin', start: async () => ({ target: { port: originPort }, stop: async () => {} }) },
    ...(['node', 'undici'] as const).map((client) => ({
      name: client === 'node' ? 'a bare Node reverse proxy (one process, no Beam)' : "the same, its origin client undici's pool",
      start: async () => {
        const proxy = await startJson(
          node,
          [path.join(here, 'diag/bare-proxy.js'), String(originPort), '--client', client],
          (e) => typeof e['port'] === 'number',
        );
        return { target: { port: proxy.event['port'] as number }, stop: stopper(proxy.child) };
      },
    })),
    // Beam's rows run as users run them: the inspector on (the default), recording every exchange. One row without it shows its cost.
    ...[[], ['--no-inspect']].map((extra) => ({
      name: extra.length === 0 ? '`beam <port>` (embedded)' : 'the same, `--no-inspect`',
      start: async () => {
        const share = await startJson(node, [...BEAM, `127.0.0.1:${originPort}`, '--json', ...extra, '--log-level', 'error'], (e) => e['event'] === 'ready');
        const url = new URL(share.event['url'] as string);
        return { target: { port: Number(url.port), host: url.host }, stop: stopper(share.child) };
      },
    })),
    {
      name: '`beam serve` + `beam http`, gateway visitor',
      start: async () => {
        const share = await startJson(
          node,
          [...BEAM, 'http', `127.0.0.1:${originPort}`, '--server', `http://127.0.0.1:${serverPort}`, '--json', '--log-level', 'error'],
          (e) => e['event'] === 'ready',
        );
        return { target: { port: serverPort, host: `${share.event['name'] as string}.localhost:${serverPort}` }, stop: stopper(share.child) };
      },
    },
    {
      name: '`beam serve --gateway-relay never` + `beam http`, gateway visitor (direct WebRTC link)',
      start: async () => {
        const share = await startJson(
          node,
          [...BEAM, 'http', `127.0.0.1:${originPort}`, '--server', `http://127.0.0.1:${directServerPort}`, '--json', '--log-level', 'error'],
          (e) => e['event'] === 'ready',
        );
        return {
          target: { port: directServerPort, host: `${share.event['name'] as string}.localhost:${directServerPort}` },
          stop: stopper(share.child),
        };
      },
    },
    {
      name: '`ssh -R`',
      start: async () => {
        const port = await freePort();
        const ssh = spawn(
          'ssh',
          [
            '-N',
            '-o',
            'StrictHostKeyChecking=no',
            '-o',
            'UserKnownHostsFile=/dev/null',
            '-o',
            'LogLevel=ERROR',
            '-i',
            sshd.key,
            '-p',
            String(sshd.port),
            '-R',
            `127.0.0.1:${port}:127.0.0.1:${originPort}`,
            'root@127.0.0.1',
          ],
          { stdio: 'ignore' },
        );
        await waitForPort(port);
        return { target: { port }, stop: stopper(ssh) };
      },
    },
  ];
  if (ltDir) {
    const ltPort = await freePort();
    const lt = spawn(ltNode, ['-r', 'esm', 'bin/server', '--port', String(ltPort), '--address', '127.0.0.1', '--domain', 'lt.local'], {
      cwd: ltDir,
      stdio: 'ignore',
    });
    await waitForPort(ltPort);
    paths.push({
      name: 'localtunnel',
      start: async () => {
        const sub = `bench${Math.floor(Math.random() * 1e6)}`;
        // The client the checkout brings (its npm install puts `localtunnel` there), as bench/lab.ts runs it.
        const client = spawn(
          ltNode,
          [path.join(ltDir, 'node_modules/localtunnel/bin/lt.js'), '--port', String(originPort), '--host', `http://127.0.0.1:${ltPort}`, '--subdomain', sub],
          {
            stdio: ['ignore', 'pipe', 'ignore'],
          },
        );
        await new Promise<void>((resolve, reject) => {
          client.stdout!.once('data', () => resolve());
          // A client that cannot start (no localtunnel in the checkout's node_modules) fails the bench, not hangs it.
          client.once('exit', (code) => reject(new Error(`localtunnel's client exited (${code}): is localtunnel in ${ltDir}/node_modules?`)));
        });
        return { target: { port: ltPort, host: `${sub}.lt.local:${ltPort}` }, stop: stopper(client) };
      },
    });
    server.child.once('exit', () => lt.kill());
  }

  // This process's own HTTP client, warm before anything is timed: the first path must not pay for it.
  for (let i = 0; i < 50; i++) await timedGet({ port: originPort }, '/1k');

  type Row = { first: number[]; seq: number[]; c10: number[]; c100: number[]; mb: number[] };
  const rows = new Map<string, Row>();
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const p of paths) {
        const row = rows.get(p.name) ?? { first: [], seq: [], c10: [], c100: [], mb: [] };
        rows.set(p.name, row);
        const { target, stop } = await p.start();
        try {
          row.first.push(await timedGet(target, '/1k'));
          row.seq.push(await sequentialP50(target));
          if (WARMUP_SECONDS > 0) await wrk(target, 10, WARMUP_SECONDS);
          row.c10.push(await wrk(target, 10));
          row.c100.push(await wrk(target, 100));
          const mbs: number[] = [];
          for (let d = 0; d < DOWNLOADS; d++) mbs.push(await curlMBps(target));
          row.mb.push(median(mbs));
        } finally {
          await stop();
        }
      }
      process.stderr.write(`rep ${rep + 1}/${REPS} done\n`);
    }
    // More first responses: a new share (or tunnel) each, interleaved over the paths, nothing else timed.
    for (let i = 0; i < FIRSTS; i++) {
      for (const p of paths) {
        const { target, stop } = await p.start();
        try {
          rows.get(p.name)?.first.push(await timedGet(target, '/1k'));
        } finally {
          await stop();
        }
      }
    }

    // beam connect: from the process start to its first response, on a share of the server.
    const connectTimes: number[] = [];
    const share = await startJson(
      node,
      [...BEAM, 'http', `127.0.0.1:${originPort}`, '--server', `http://127.0.0.1:${serverPort}`, '--json', '--no-inspect', '--log-level', 'error'],
      (e) => e['event'] === 'ready',
    );
    try {
      for (let rep = 0; rep < REPS; rep++) {
        const started = performance.now();
        const visitor = await startJson(
          node,
          [...BEAM, 'connect', share.event['link'] as string, '--port', '0', '--json', '--log-level', 'error'],
          (e) => e['event'] === 'ready',
        );
        const local = new URL(visitor.event['url'] as string);
        await timedGet({ port: Number(local.port) }, '/1k');
        connectTimes.push(performance.now() - started);
        await stopper(visitor.child)();
      }
    } finally {
      await stopper(share.child)();
    }

    // A gateway visitor who comes a second after the link is out (a person, not a script): by then the
    // server's warm link to the share is up, so this is the first response most visitors see.
    const laterTimes: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      const later = await startJson(
        node,
        [...BEAM, 'http', `127.0.0.1:${originPort}`, '--server', `http://127.0.0.1:${serverPort}`, '--json', '--no-inspect', '--log-level', 'error'],
        (e) => e['event'] === 'ready',
      );
      try {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        laterTimes.push(await timedGet({ port: serverPort, host: `${later.event['name'] as string}.localhost:${serverPort}` }, '/1k'));
      } finally {
        await stopper(later.child)();
      }
    }

    const m = (name: string, k: keyof Row): number => median(rows.get(name)?.[k] ?? [NaN]);
    const lines: string[] = [];
    lines.push(
      `Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} cores, Node ${process.version}; median of ${REPS} runs (min–max), a new share or tunnel each run; wrk -t1 for ${SECONDS} s after ${WARMUP_SECONDS} s untimed; 100 MiB: the median of ${DOWNLOADS} downloads in a row each run.`,
      '',
      '| path | first response | sequential p50 | 1 KiB req/s, 10 conn | 1 KiB req/s, 100 conn | 100 MiB |',
      '|---|---|---|---|---|---|',
    );
    for (const [name, r] of rows) {
      lines.push(
        `| ${name} | ${median(r.first).toFixed(1)} ms (${spread(r.first, 1)}) | ${median(r.seq).toFixed(2)} ms | ${median(r.c10).toFixed(0)} (${spread(r.c10, 0)}) | ${median(r.c100).toFixed(0)} (${spread(r.c100, 0)}) | ${median(r.mb).toFixed(0)} MB/s |`,
      );
    }
    if (!ltDir) lines.push('', 'localtunnel: missing (set LT_SERVER_DIR to a checkout of localtunnel/server).');
    const E = '`beam <port>` (embedded)';
    const G = '`beam serve` + `beam http`, gateway visitor';
    const S = '`ssh -R`';
    const L = 'localtunnel';
    const B = 'a bare Node reverse proxy (one process, no Beam)';
    const U = "the same, its origin client undici's pool";
    const NI = 'the same, `--no-inspect`';
    // Not a target: how much of a one-process proxy's rate the embedded default keeps, where ssh -R (two processes) stands on it, and what undici's client is worth to it.
    const of = (name: string, base: string): string => `${(m(name, 'c10') / m(base, 'c10')).toFixed(2)}× / ${(m(name, 'c100') / m(base, 'c100')).toFixed(2)}×`;
    lines.push(
      '',
      `Of the bare Node proxy's 1 KiB req/s (10 / 100 connections): embedded ${of(E, B)}, ssh -R ${of(S, B)}, the same proxy on undici's pool ${of(U, B)}. Of the undici proxy's: embedded ${of(E, U)}. The embedded default with its inspector (the default) / with \`--no-inspect\`: ${of(E, NI)}.`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
    reportTargets([
      atMost('embedded: first response', m(E, 'first'), 20, 'ms'),
      atLeast('embedded: 1 KiB req/s at 10 connections / ssh -R', m(E, 'c10') / m(S, 'c10'), 1, 'ratio'),
      atLeast('embedded: 100 MiB / ssh -R', m(E, 'mb') / m(S, 'mb'), 0.5, 'ratio'),
      atMost('gateway visitor: first response, at once', m(G, 'first'), 50, 'ms'),
      atMost('gateway visitor: first response, 1 s after the link', median(laterTimes), 50, 'ms'),
      atLeast('gateway visitor: 1 KiB req/s at 10 connections / ssh -R', m(G, 'c10') / m(S, 'c10'), 0.8, 'ratio'),
      atLeast('gateway visitor: 1 KiB req/s at 10 connections / localtunnel', m(G, 'c10') / m(L, 'c10'), 1.5, 'ratio'),
      atLeast('gateway visitor: 100 MiB / localtunnel', m(G, 'mb') / m(L, 'mb'), 1, 'ratio'),
      atMost('beam connect: first response after the process starts', median(connectTimes), 1000, 'ms'),
    ]);
  } finally {
    await stopper(server.child, directServer.child, sshd.child, origin.child)();
  }
}

await main();
