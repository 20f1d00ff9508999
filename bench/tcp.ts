/**
 * TCP shares benchmark, on loopback, in one run: redis-benchmark ops/s and a
 * psql bulk copy (100,000 rows in, then out) against the service directly,
 * through Beam (`beam tcp` + `beam connect`, real processes), and through
 * `ssh -L` (OpenSSH's port forward, the usual way to reach a teammate's
 * database). Prints the ratios.
 *
 *   npm run build && node dist/bench/tcp.js [--reps 3] [--requests 100000]
 *
 * Needs root (PostgreSQL runs as its own user), postgresql, redis-server and
 * redis-tools, and openssh-server for the ssh -L baseline (reported missing
 * without it).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { beamEvent, freePort, numberArg, type Service, startPostgres, startRedis, startUntil } from '../test/helpers/services.js';

const REPS = numberArg('--reps', 3);
const REQUESTS = numberArg('--requests', 100_000);
const ROWS = 100_000;
const children: ChildProcess[] = [];
const services: Service[] = [];

const beam = (argv: string[], event: string): Promise<Record<string, unknown>> => beamEvent(argv, event, children);

function run(cmd: string, argv: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, argv, { maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve(stdout),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Shares `port` through Beam; the local port `beam connect` listens on. */
async function throughBeam(server: string, port: number): Promise<number> {
  const ready = await beam(['tcp', `127.0.0.1:${port}`, '--server', server, '--json'], 'ready');
  const local = await beam(['connect', ready['link'] as string, '--server', server, '--json'], 'ready');
  return Number(new URL(local['url'] as string).port);
}

/** An sshd of our own on loopback (key auth only), or undefined when openssh-server is missing. */
async function startSshd(): Promise<{ port: number; key: string } | undefined> {
  if (!existsSync('/usr/sbin/sshd')) return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-sshd-'));
  const key = path.join(dir, 'id');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host')]);
  writeFileSync(path.join(dir, 'authorized_keys'), execFileSync('cat', [`${key}.pub`]));
  const port = await freePort();
  writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${dir}/host`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      'PasswordAuthentication no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      'StrictModes no',
      'UsePAM no',
      `PidFile ${dir}/pid`,
    ].join('\n'),
  );
  execFileSync('mkdir', ['-p', '/run/sshd']);
  const child = await startUntil('/usr/sbin/sshd', ['-D', '-e', '-f', path.join(dir, 'sshd_config')], /Server listening/);
  children.push(child);
  return { port, key };
}

async function throughSsh(sshd: { port: number; key: string }, port: number): Promise<number> {
  const local = await freePort();
  const child = spawn(
    'ssh',
    [
      '-N',
      '-L',
      `127.0.0.1:${local}:127.0.0.1:${port}`,
      '-i',
      sshd.key,
      '-p',
      String(sshd.port),
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'LogLevel=ERROR',
      'root@127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  children.push(child);
  // Ready once the forward accepts connections.
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      execFile('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${local}`], (err) => resolve(!err));
    });
    if (ok) return local;
    if (child.exitCode !== null) throw new Error('ssh -L exited');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function redisRps(port: number): Promise<{ set: number; get: number }> {
  const sets: number[] = [];
  const gets: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const out = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-n', String(REQUESTS), '-c', '50', '-t', 'set,get', '-q']);
    sets.push(Number(/SET: ([\d.]+)/.exec(out)?.[1]));
    gets.push(Number(/GET: ([\d.]+)/.exec(out)?.[1]));
  }
  return { set: median(sets), get: median(gets) };
}

async function psqlCopyMs(port: number, rows: string): Promise<number> {
  const psql = (sql: string, input?: string): Promise<string> =>
    run('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sql], input);
  const times: number[] = [];
  for (let i = 0; i < REPS; i++) {
    await psql('DROP TABLE IF EXISTS bench_rows; CREATE TABLE bench_rows (id integer, payload text)');
    const t = performance.now();
    await psql('\\copy bench_rows FROM STDIN', rows);
    const out = await psql('COPY bench_rows TO STDOUT');
    times.push(performance.now() - t);
    if (out.length !== rows.length) throw new Error(`copy returned ${out.length} bytes, sent ${rows.length}`);
  }
  return median(times);
}

async function main(): Promise<void> {
  console.log(
    `# Beam TCP shares benchmark: ${cpus().length} CPUs, Node ${process.version}, median of ${REPS}; redis-benchmark -n ${REQUESTS} -c 50; psql copy of ${ROWS} rows in and out`,
  );
  const redis = await startRedis();
  services.push(redis);
  const pg = await startPostgres();
  services.push(pg);
  const serve = await beam(['serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'warn'], 'ready');
  const server = `http://127.0.0.1:${serve['port'] as number}`;
  const sshd = await startSshd();
  const rows = Array.from({ length: ROWS }, (_, i) => `${i}\tpayload-${i}-${'x'.repeat(40)}\n`).join('');

  const paths: Array<[string, number | undefined, number | undefined]> = [
    ['direct', redis.port, pg.port],
    ['Beam (beam tcp + beam connect)', await throughBeam(server, redis.port), await throughBeam(server, pg.port)],
    ['ssh -L', sshd ? await throughSsh(sshd, redis.port) : undefined, sshd ? await throughSsh(sshd, pg.port) : undefined],
  ];
  const results = new Map<string, { set: number; get: number; copyMs: number } | undefined>();
  for (const [name, redisPort, pgPort] of paths) {
    if (redisPort === undefined || pgPort === undefined) {
      results.set(name, undefined);
      continue;
    }
    const r = await redisRps(redisPort);
    results.set(name, { ...r, copyMs: await psqlCopyMs(pgPort, rows) });
  }
  console.log('\n| path | redis SET ops/s | redis GET ops/s | psql copy in+out |\n|---|---|---|---|');
  for (const [name, r] of results) {
    console.log(
      r ? `| ${name} | ${Math.round(r.set)} | ${Math.round(r.get)} | ${Math.round(r.copyMs)} ms |` : `| ${name} | missing (install openssh-server) | | |`,
    );
  }
  const beamR = results.get('Beam (beam tcp + beam connect)');
  const direct = results.get('direct');
  const ssh = results.get('ssh -L');
  if (beamR && direct)
    console.log(
      `\nBeam / direct: SET ${(beamR.set / direct.set).toFixed(2)}x, GET ${(beamR.get / direct.get).toFixed(2)}x, copy time ${(beamR.copyMs / direct.copyMs).toFixed(2)}x`,
    );
  if (beamR && ssh)
    console.log(
      `Beam / ssh -L: SET ${(beamR.set / ssh.set).toFixed(2)}x, GET ${(beamR.get / ssh.get).toFixed(2)}x, copy time ${(beamR.copyMs / ssh.copyMs).toFixed(2)}x`,
    );
}

try {
  await main();
} finally {
  for (const c of children) c.kill('SIGKILL');
  for (const s of services) s.stop();
}
process.exit(0);
