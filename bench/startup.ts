/**
 * How quickly `beam` answers (issue 19's targets), median of --reps runs:
 *
 *   node -e 0              bare Node, the floor
 *   beam --help            ≤ 250 ms over bare Node
 *   beam <port>            the embedded default's link (its ready event) ≤ 600 ms after start
 *   beam connect <link>    ready ≤ 800 ms after start plus path setup (its session's `after`)
 *
 *   npm run build && node dist/bench/startup.js [--reps 7]
 */
import { execFile, spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { numberArg } from '../test/helpers/services.js';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(root, 'bin', 'beam.js');
const REPS = numberArg('--reps', 7);
const node = process.execPath;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function timed(args: string[]): Promise<number> {
  const started = performance.now();
  await run(node, args, { cwd: root });
  return performance.now() - started;
}

/** Milliseconds from spawning `beam args` to its first JSON event named `event`; the event too. Then stops it. */
function untilEvent(args: string[], event: string): Promise<{ ms: number; e: Record<string, unknown>; stop: () => Promise<void> }> {
  const started = performance.now();
  const child = spawn(node, [BIN, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, BEAM_SERVER: '' } });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (e['event'] === event) resolve({ ms: performance.now() - started, e, stop });
      } catch {
        // not JSON
      }
    });
    child.once('exit', (code) => reject(new Error(`beam ${args.join(' ')} exited ${code}`)));
  });
}

const origin = http.createServer((_req, res) => res.end('ok'));
await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
const originPort = (origin.address() as { port: number }).port;

const bare: number[] = [];
const help: number[] = [];
const embedded: number[] = [];
const connectReady: number[] = [];
const connectSetup: number[] = [];
const server = await untilEvent(['serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'error'], 'ready');
const share = await untilEvent(['http', String(originPort), '--server', `http://127.0.0.1:${server.e['port'] as number}`, '--json', '--no-inspect'], 'ready');
try {
  for (let i = 0; i < REPS; i++) {
    bare.push(await timed(['-e', '0']));
    help.push(await timed([BIN, '--help']));
    const e = await untilEvent([String(originPort), '--json', '--port', '0', '--no-inspect'], 'ready');
    embedded.push(e.ms);
    await e.stop();
    const c = await untilEvent(['connect', share.e['link'] as string, '--json'], 'session');
    connectReady.push(c.ms);
    connectSetup.push(Number(c.e['after']));
    await c.stop();
  }
} finally {
  await share.stop();
  await server.stop();
  origin.close();
}
const f = (ms: number): string => `${Math.round(ms)} ms`;
process.stdout.write(
  [
    `Startup on ${process.version}, median of ${REPS}:`,
    '',
    '| measure | value | target |',
    '|---|---|---|',
    `| bare node -e 0 | ${f(median(bare))} | |`,
    `| beam --help | ${f(median(help))} (+${f(median(help) - median(bare))} over bare Node) | ≤ +250 ms |`,
    `| beam <port>: the link (ready) after start | ${f(median(embedded))} | ≤ 600 ms |`,
    `| beam connect: ready after start | ${f(median(connectReady))}, of which path setup ${f(median(connectSetup))} | ≤ 800 ms + path setup (${f(median(connectReady) - median(connectSetup))}) |`,
    '',
  ].join('\n'),
);
