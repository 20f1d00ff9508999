/**
 * `beam run [options] -- <command>`: the share is registered before the
 * command starts, the command gets BEAM_URL, BEAM_HOST and PORT, the share
 * serves the port it listens on, Ctrl+C stops both, and Beam exits with the
 * command's code.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';
import { freePort } from '../helpers/services.js';

let server: ServerHandle;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.proc.kill();
});

/** A server that answers with what its environment says, and exits 3 on SIGINT or SIGTERM. */
const APP = `
const http = require('node:http');
const s = http.createServer((req, res) => res.end(JSON.stringify({ url: process.env.BEAM_URL, host: process.env.BEAM_HOST, port: process.env.PORT })));
s.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('app listening'));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { s.close(); process.exit(3); });
`;

describe('beam run', () => {
  it('registers first, runs the command with BEAM_URL, BEAM_HOST and PORT, serves its port; Ctrl+C stops both with its exit code', async () => {
    const port = await freePort();
    const run = new BeamProcess(['run', '--port', String(port), '--server', server.url, '--json', '--no-inspect', '--', process.execPath, '-e', APP]);
    const ready = await run.waitFor('ready');
    const started = await run.waitFor('started');
    // The share exists before the command runs.
    expect(run.events.findIndex((e) => e.event === 'ready')).toBeLessThan(run.events.findIndex((e) => e.event === 'started'));
    expect(started['pid']).toBeGreaterThan(0);
    await run.waitFor('origin-ready');
    const url = ready['url'] as string;
    const res = await request(server.port, new URL(url).host, '/');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ url, host: new URL(url).host, port: String(port) });
    // With --json, the command's own output goes to stderr: stdout is events only.
    expect(run.stderr).toContain('app listening');
    expect(run.events.every((e) => e.event !== 'text')).toBe(true);
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(3);
    expect(run.events.find((e) => e.event === 'exited')).toMatchObject({ event: 'exited', code: 3 });
    expect(run.events.at(-1)).toMatchObject({ event: 'closed' });
    // The share is gone with it.
    const after = await request(server.port, new URL(url).host, '/');
    expect(after.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
  });

  it("a command that exits on its own ends the share, and Beam exits with the command's code", async () => {
    const run = new BeamProcess([
      'run',
      '--port',
      String(await freePort()),
      '--server',
      server.url,
      '--json',
      '--no-inspect',
      '--',
      process.execPath,
      '-e',
      'process.exit(7)',
    ]);
    expect(await run.exited).toBe(7);
    // The gateway's warm link may open a session in between (session, path,
    // session-closed); the share's own lifecycle runs in this order.
    const lifecycle = new Set(['ready', 'started', 'exited', 'closed', 'error']);
    expect(run.events.map((e) => e.event).filter((e) => lifecycle.has(e))).toEqual(['ready', 'started', 'exited', 'closed']);
    expect(run.events.at(-1)).toMatchObject({ event: 'closed' });
  });

  it('a command that is not there: an error event, exit 127, and the share closed', async () => {
    const run = new BeamProcess(['run', '--port', String(await freePort()), '--server', server.url, '--json', '--no-inspect', '--', 'no-such-command-beam']);
    expect(await run.exited).toBe(127);
    expect(run.events.find((e) => e.event === 'error')).toMatchObject({ code: 'BEAM_ERR_BAD_OPTION' });
    expect(run.events.at(-1)).toMatchObject({ event: 'closed' });
  });

  it("with no --port, the port of package.json's framework; with neither, BEAM_ERR_BAD_OPTION before anything starts", async () => {
    const project = mkdtempSync(path.join(tmpdir(), 'beam-run-'));
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ devDependencies: { vite: '^8' }, scripts: { dev: 'vite --port 5199' } }));
    const detected = new BeamProcess(
      ['run', '--server', server.url, '--json', '--no-inspect', '--', process.execPath, '-e', 'setTimeout(() => {}, 1000)'],
      {},
      { cwd: project },
    );
    expect(await detected.waitFor('detected')).toMatchObject({ framework: 'Vite', port: 5199 });
    expect((await detected.waitFor('ready'))['origin']).toBe('localhost:5199');
    expect(await detected.exited).toBe(0);
    const empty = mkdtempSync(path.join(tmpdir(), 'beam-run-'));
    const refused = new BeamProcess(['run', '--server', server.url, '--json', '--', process.execPath, '-e', ''], {}, { cwd: empty });
    expect((await refused.waitFor('error'))['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(await refused.exited).toBe(1);
    expect(refused.events.some((e) => e.event === 'ready')).toBe(false);
  });
});
