/**
 * Soak: a TCP connection through `beam tcp` + `beam connect` stays usable
 * after a long idle time (the issue asks for 10 minutes), on the direct path
 * and on the relay; and an idle HTTP share (its origin a plain Node server,
 * which drops idle keep-alive sockets after 5 s) answers 20 sequential
 * requests after the idle time with the origin's real response, never a
 * stale pooled socket's. Prints what happened; exits 1 if anything failed.
 *
 *   npm run build && node dist/bench/idle.js [--minutes 10]
 */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { beamEvent } from '../test/helpers/services.js';

const i = process.argv.indexOf('--minutes');
const MINUTES = i >= 0 ? Number(process.argv[i + 1]) : 10;
const children: ChildProcess[] = [];

const beam = (argv: string[], event: string): Promise<Record<string, unknown>> => beamEvent(argv, event, children);

function echo(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    socket.once('data', (d: Buffer) => resolve(d.toString()));
    socket.write(text);
  });
}

async function main(): Promise<number> {
  const origin = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
  await new Promise((r) => origin.once('listening', r));
  const serve = await beam(['serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'warn'], 'ready');
  const server = `http://127.0.0.1:${serve['port'] as number}`;
  const ready = await beam(['tcp', `127.0.0.1:${(origin.address() as net.AddressInfo).port}`, '--server', server, '--json'], 'ready');
  const sockets: Array<[string, net.Socket]> = [];
  for (const relay of ['never', 'always']) {
    const local = await beam(['connect', ready['link'] as string, '--server', server, '--json', '--relay', relay], 'ready');
    const socket = net.connect(Number(new URL(local['url'] as string).port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.on('error', (err) => console.log(`${relay === 'never' ? 'direct' : 'relay'}: error ${err.message}`));
    console.log(`${relay === 'never' ? 'direct' : 'relay'}: before idle -> ${await echo(socket, 'ping')}`);
    sockets.push([relay === 'never' ? 'direct' : 'relay', socket]);
  }
  // The HTTP share, through the server's gateway.
  let served = 0;
  const web = http.createServer((req, res) => res.end(`real ${req.url} #${++served}`)).listen(0, '127.0.0.1');
  await new Promise((r) => web.once('listening', r));
  const share = await beam(['http', `127.0.0.1:${(web.address() as net.AddressInfo).port}`, '--server', server, '--json', '--no-inspect'], 'ready');
  const host = new URL(share['url'] as string).host;
  const get = (path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: Number(serve['port']), path, headers: { host } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
  console.log(`http: before idle -> ${(await get('/warm')).body}`);
  console.log(`idle for ${MINUTES} min...`);
  await new Promise((r) => setTimeout(r, MINUTES * 60_000));
  let failed = 0;
  for (const [name, socket] of sockets) {
    const reply = socket.destroyed
      ? 'connection closed'
      : await Promise.race([echo(socket, 'still there?'), new Promise<string>((r) => setTimeout(() => r('no answer in 10 s'), 10_000))]);
    console.log(`${name}: after ${MINUTES} min idle -> ${reply}`);
    if (reply !== 'still there?') failed++;
  }
  const answers: string[] = [];
  for (let n = 0; n < 20; n++) {
    const r = await get(`/after-idle-${n}`).catch((err: Error) => ({ status: 0, body: err.message }));
    answers.push(r.status === 200 && r.body.startsWith(`real /after-idle-${n} `) ? 'ok' : `${r.status} ${r.body}`);
  }
  const bad = answers.filter((a) => a !== 'ok');
  console.log(`http: after ${MINUTES} min idle, 20 sequential requests -> ${20 - bad.length} real answers${bad.length ? `; others: ${bad.join(' | ')}` : ''}`);
  if (bad.length) failed++;
  origin.close();
  web.close();
  return failed ? 1 : 0;
}

const code = await main().finally(() => {
  for (const c of children) c.kill('SIGKILL');
});
process.exit(code);
