/**
 * The core tunnel benchmark. In one run, on this machine:
 *   (a) direct requests to a local origin,
 *   (b) a raw node-datachannel transfer between two processes,
 *   (c) requests through Beam's gateway (real `beam serve` + `beam http` processes).
 * Prints req/s and p50/p99 for 1 KiB responses at 10 and 100 connections,
 * MB/s for a 100 MiB download, and the ratios the core tunnel issue sets.
 *
 *   npm run build && node dist/bench/core.js [--reps 3] [--seconds 5] [--write-readme] (writes the table into docs/benchmarks.md)
 *
 * Needs wrk and curl (Debian: apt-get install -y wrk curl).
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { numberArg, startJson } from '../test/helpers/services.js';
import { rawTransfer } from './raw-ndc.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const args = process.argv.slice(2);
const flag = numberArg;
const REPS = flag('--reps', 3);
const SECONDS = flag('--seconds', 5);
const DOWNLOAD = 100 * 1024 * 1024;

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
}

function ms(text: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function wrk(url: string, host: string | undefined, connections: number): Promise<WrkResult> {
  const argv = ['-t1', `-c${connections}`, `-d${SECONDS}s`, '--latency', ...(host ? ['-H', `Host: ${host}`] : []), url];
  const { stdout } = await run('wrk', argv);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = ms(/^\s*50%\s+(\S+)/m.exec(stdout)?.[1] ?? '');
  const p99 = ms(/^\s*99%\s+(\S+)/m.exec(stdout)?.[1] ?? '');
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} failed responses on ${url}`);
  return { rps, p50, p99 };
}

async function curlMBps(url: string, host?: string): Promise<number> {
  const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', ...(host ? ['-H', `Host: ${host}`] : []), url]);
  const [speed, size] = stdout.trim().split(' ').map(Number);
  if (size !== DOWNLOAD) throw new Error(`download of ${url} returned ${size} bytes`);
  return (speed as number) / 1e6;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const spread = (xs: number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

async function main(): Promise<void> {
  const node = process.execPath;
  const origin = await startJson(node, [path.join(here, 'origin.js')], (e) => typeof e['port'] === 'number');
  const originPort = origin.event['port'] as number;
  const server = await startJson(
    node,
    ['bin/beam.js', 'serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'error'],
    (e) => e['event'] === 'ready',
  );
  const serverPort = server.event['port'] as number;
  const agent = await startJson(
    node,
    ['bin/beam.js', 'http', `127.0.0.1:${originPort}`, '--server', `http://127.0.0.1:${serverPort}`, '--json', '--log-level', 'error'],
    (e) => e['event'] === 'ready',
  );
  const host = `${agent.event['name'] as string}.localhost:${serverPort}`;
  const direct = `http://127.0.0.1:${originPort}`;
  const gateway = `http://127.0.0.1:${serverPort}`;

  try {
    // Warm-up: the peer connection, pools and JIT.
    await wrk(`${gateway}/1k`, host, 10);
    await curlMBps(`${gateway}/bytes/${DOWNLOAD}`, host);

    const results: Record<string, WrkResult[]> = {};
    const downloads: Record<string, number[]> = { direct: [], raw16: [], raw64: [], beam: [] };
    for (let rep = 0; rep < REPS; rep++) {
      for (const c of [10, 100]) {
        (results[`direct c${c}`] ??= []).push(await wrk(`${direct}/1k`, undefined, c));
        (results[`beam c${c}`] ??= []).push(await wrk(`${gateway}/1k`, host, c));
      }
      downloads['direct']!.push(await curlMBps(`${direct}/bytes/${DOWNLOAD}`));
      downloads['raw16']!.push(await rawTransfer(DOWNLOAD, 16 * 1024));
      downloads['raw64']!.push(await rawTransfer(DOWNLOAD, 64 * 1024));
      downloads['beam']!.push(await curlMBps(`${gateway}/bytes/${DOWNLOAD}`, host));
      process.stderr.write(`rep ${rep + 1}/${REPS} done\n`);
    }

    const lines: string[] = [];
    const date = new Date().toISOString().slice(0, 10);
    lines.push(
      `Measured ${date} on ${cpus().length} cores (${cpus()[0]?.model ?? 'cpu'}), Node ${process.version}; median of ${REPS} runs (min–max), wrk -t1 for ${SECONDS} s.`,
    );
    lines.push('');
    lines.push('| path | connections | req/s (1 KiB) | p50 ms | p99 ms |');
    lines.push('|---|---|---|---|---|');
    for (const c of [10, 100]) {
      for (const p of ['direct', 'beam']) {
        const r = results[`${p} c${c}`]!;
        const rps = r.map((x) => x.rps);
        lines.push(
          `| ${p === 'direct' ? '(a) direct to origin' : '(c) through Beam'} | ${c} | ${median(rps).toFixed(0)} (${spread(rps, 0)}) | ${median(r.map((x) => x.p50)).toFixed(2)} | ${median(r.map((x) => x.p99)).toFixed(2)} |`,
        );
      }
    }
    lines.push('');
    lines.push('| 100 MiB download | MB/s |');
    lines.push('|---|---|');
    const label: Record<string, string> = {
      direct: '(a) direct to origin (curl)',
      raw16: '(b) raw node-datachannel, 2 processes, 16 KiB messages',
      raw64: '(b) raw node-datachannel, 2 processes, 64 KiB messages',
      beam: '(c) through Beam (curl)',
    };
    for (const k of Object.keys(downloads)) lines.push(`| ${label[k]} | ${median(downloads[k]!).toFixed(1)} (${spread(downloads[k]!, 1)}) |`);
    lines.push('');
    const ratio = (c: number): number => median(results[`beam c${c}`]!.map((x) => x.rps)) / median(results[`direct c${c}`]!.map((x) => x.rps));
    const added = (c: number): number => median(results[`beam c${c}`]!.map((x) => x.p50)) - median(results[`direct c${c}`]!.map((x) => x.p50));
    const beamDl = median(downloads['beam']!);
    lines.push('| ratio | value | target |');
    lines.push('|---|---|---|');
    lines.push(`| Beam / direct req/s, 10 connections | ${ratio(10).toFixed(3)}× | ≥ 0.15× |`);
    lines.push(`| Beam / direct req/s, 100 connections | ${ratio(100).toFixed(3)}× | ≥ 0.15× |`);
    lines.push(`| added p50, 10 connections | ${added(10).toFixed(2)} ms | ≤ 1 ms |`);
    lines.push(`| added p50, 100 connections | ${added(100).toFixed(2)} ms | |`);
    lines.push(`| Beam download / raw node-datachannel (16 KiB) | ${(beamDl / median(downloads['raw16']!)).toFixed(2)}× | ≥ 0.9× |`);
    lines.push(`| Beam download / raw node-datachannel (64 KiB) | ${(beamDl / median(downloads['raw64']!)).toFixed(2)}× | |`);
    lines.push(`| Beam download / direct | ${(beamDl / median(downloads['direct']!)).toFixed(3)}× | |`);
    const table = lines.join('\n');
    process.stdout.write(`${table}\n`);

    if (args.includes('--write-readme')) {
      const readme = path.join(root, 'docs', 'benchmarks.md');
      const text = readFileSync(readme, 'utf8');
      const start = '<!-- bench:core:start -->';
      const end = '<!-- bench:core:end -->';
      const a = text.indexOf(start);
      const b = text.indexOf(end);
      if (a < 0 || b < 0) throw new Error('docs/benchmarks.md has no bench:core markers');
      writeFileSync(readme, `${text.slice(0, a + start.length)}\n${table}\n${text.slice(b)}`);
      process.stderr.write('docs/benchmarks.md updated\n');
    }
  } finally {
    agent.child.kill();
    server.child.kill();
    origin.child.kill();
  }
}

await main();
