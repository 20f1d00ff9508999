/**
 * `npm run bench`: every target of issue 18 in one run, and one table of
 * them at the end. Runs, in turn, each bench that measures some of them
 * (each prints its own tables as it goes):
 *
 *   first-byte   the side-by-side table: embedded, gateway, ssh -R, localtunnel, beam connect
 *   floor        the direct path against the thinnest node-datachannel proxy (bench/diag/floor.ts)
 *   browser      a share in Chromium: the app's first content, peer to peer against the gateway's
 *   topology     the NAT lab: peers near each other, the server far away (root)
 *
 * A bench whose tools are missing is skipped, and the table says why.
 *
 *   npm run bench [-- --only first-byte,floor]
 *
 * localtunnel's rows need LT_SERVER_DIR (a checkout of localtunnel/server).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TARGETS_ENV, type TargetResult, targetTable } from './targets.js';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Bench {
  name: string;
  script: string;
  args: string[];
  /** Why it cannot run here, or undefined. */
  missing(): string | undefined;
}

/** The first of `names` not found as an executable on PATH (or at an absolute path). */
function missingTool(...names: string[]): string | undefined {
  const dirs = (process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean);
  for (const name of names) {
    const candidates = path.isAbsolute(name) ? [name] : dirs.map((d) => path.join(d, name));
    const found = candidates.some((file) => {
      try {
        accessSync(file, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) return name;
  }
  return undefined;
}

const BENCHES: Bench[] = [
  {
    name: 'first-byte',
    script: 'first-byte.js',
    args: [],
    missing: () => {
      const tool = missingTool('wrk', 'curl', 'ssh', '/usr/sbin/sshd');
      return tool && `${tool} not found (apt-get install -y wrk curl openssh-server)`;
    },
  },
  {
    name: 'floor',
    script: 'diag/floor.js',
    args: [],
    missing: () => (missingTool('wrk') ? 'wrk not found (apt-get install -y wrk)' : undefined),
  },
  {
    name: 'browser',
    script: 'browser.js',
    args: ['--reps', '3', '--mib', '16', '--requests', '50'],
    missing: () => {
      const chromium = process.env['BEAM_CHROMIUM'] ?? '/usr/bin/chromium';
      return missingTool(chromium) ? `no Chromium at ${chromium} (apt-get install -y chromium, or set BEAM_CHROMIUM)` : undefined;
    },
  },
  {
    name: 'topology',
    script: 'topology.js',
    args: [],
    missing: () => {
      if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
      const tool = missingTool('ip', 'iptables', 'ethtool', 'python3');
      return tool && `${tool} not found (apt-get install -y iproute2 iptables ethtool python3)`;
    },
  },
];

function runBench(bench: Bench, targetsFile: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, bench.script), ...bench.args], {
      stdio: 'inherit',
      env: { ...process.env, [TARGETS_ENV]: targetsFile },
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  const only = values.only?.split(',').map((s) => s.trim());
  const unknown = only?.filter((name) => !BENCHES.some((b) => b.name === name));
  if (unknown?.length) throw new Error(`--only: no bench named ${unknown.join(', ')} (there are ${BENCHES.map((b) => b.name).join(', ')})`);
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-bench-'));
  const rows: string[] = [];
  let failed = false;
  try {
    for (const bench of BENCHES) {
      if (only && !only.includes(bench.name)) continue;
      const why = bench.missing();
      if (why) {
        rows.push(`| ${bench.name}: skipped | | | ${why} |`);
        continue;
      }
      process.stdout.write(`\n## ${bench.name}\n\n`);
      const file = path.join(dir, `${bench.name}.jsonl`);
      const code = await runBench(bench, file);
      let targets: TargetResult[] = [];
      try {
        targets = readFileSync(file, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as TargetResult);
      } catch {
        // it reported nothing: said below
      }
      if (code !== 0 || targets.length === 0) {
        failed = true;
        rows.push(`| ${bench.name}: failed (exit ${code}) | | | see its output above |`);
      }
      rows.push(...targetTable(targets).split('\n').slice(2));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`\n## Issue 18's targets, this run\n\n${targetTable([]).split('\n').slice(0, 2).join('\n')}\n${rows.join('\n')}\n`);
  if (failed) process.exitCode = 1;
}

await main();
