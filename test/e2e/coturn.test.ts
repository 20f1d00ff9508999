/**
 * The coturn config Beam ships (deploy/turnserver.conf) refuses to relay to
 * private, loopback, link-local, CGNAT and IPv4-mapped ranges, so TURN can't
 * be used to reach services next to the server. Real coturn, driven by its
 * own test client (turnutils_uclient) with REST credentials, in a namespace.
 */

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/procs.js';

const NS = `bct${process.pid % 100000}`;
const TURN_IP = '198.18.0.1';
const PEER_IP = '198.18.0.2';
const SECRET = 'coturn-test-secret-0123456789';
const procs: ChildProcess[] = [];

function inNs(cmd: string, args: string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', NS, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.resume();
  child.stderr!.resume();
  procs.push(child);
  return child;
}

/** Runs turnutils_uclient as user `user` against `peer`; its output. */
function uclient(user: string, peer: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', NS, 'timeout', '10', 'turnutils_uclient', '-W', SECRET, '-u', user, '-e', peer, '-r', '3480', '-n', '3', '-c', TURN_IP],
      (_err, stdout, stderr) => resolve(`${stdout}${stderr}`),
    );
  });
}

beforeAll(async () => {
  execFileSync('ip', ['netns', 'add', NS]);
  for (const args of [
    ['link', 'set', 'lo', 'up'],
    ['link', 'add', 'br0', 'type', 'bridge'],
    ['link', 'set', 'br0', 'up'],
    ['addr', 'add', `${TURN_IP}/24`, 'dev', 'br0'],
    ['addr', 'add', `${PEER_IP}/24`, 'dev', 'br0'],
  ])
    execFileSync('ip', ['-n', NS, ...args]);
  const turn = inNs('turnserver', [
    '-c',
    path.join(ROOT, 'deploy/turnserver.conf'),
    '--listening-ip',
    TURN_IP,
    '--relay-ip',
    TURN_IP,
    '--static-auth-secret',
    SECRET,
    '--realm',
    'beam.test',
    '--pidfile',
    path.join(tmpdir(), `${NS}.turn.pid`),
    '--log-file',
    'stdout',
  ]);
  inNs('turnutils_peer', ['-L', PEER_IP, '-p', '3480']);
  // Ready once it answers on its TCP listener.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      execFile('ip', ['netns', 'exec', NS, 'bash', '-c', `exec 3<>/dev/tcp/${TURN_IP}/3478`], (err) => resolve(!err));
    });
    if (up) break;
    if (turn.exitCode !== null || Date.now() > deadline) throw new Error('coturn did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(() => {
  for (const p of procs) p.kill('SIGKILL');
  try {
    execFileSync('ip', ['netns', 'del', NS]);
  } catch {
    // not created
  }
});

describe('the shipped coturn config', () => {
  it('relays to a public peer with REST credentials', async () => {
    const out = await uclient('allowed', PEER_IP);
    expect(out).toMatch(/tot_recv_msgs=3\b/);
    expect(out).not.toMatch(/403/);
  });

  it.each([
    ['loopback', '127.0.0.1'],
    ['private 10/8', '10.1.2.3'],
    ['private 172.16/12', '172.16.0.1'],
    ['private 192.168/16', '192.168.1.1'],
    ['link-local', '169.254.169.254'],
    ['CGNAT', '100.64.0.1'],
  ])('refuses a %s peer (%s) with 403 Forbidden IP', async (_what, peer) => {
    const out = await uclient(`user-${peer}`, peer);
    expect(out).toMatch(/403 \(Forbidden IP\)/);
    expect(out).not.toMatch(/tot_recv_msgs=[1-9]/);
  });

  it('refuses TURN without valid REST credentials', async () => {
    const out = await new Promise<string>((resolve) => {
      execFile(
        'ip',
        [
          'netns',
          'exec',
          NS,
          'timeout',
          '10',
          'turnutils_uclient',
          '-W',
          'not-the-secret-at-all',
          '-u',
          'intruder',
          '-e',
          PEER_IP,
          '-r',
          '3480',
          '-n',
          '3',
          '-c',
          TURN_IP,
        ],
        (_err, stdout, stderr) => resolve(`${stdout}${stderr}`),
      );
    });
    expect(out).toMatch(/Cannot complete Allocation|401|Unauthorized/i);
    expect(out).not.toMatch(/tot_recv_msgs=[1-9]/);
  });
});
