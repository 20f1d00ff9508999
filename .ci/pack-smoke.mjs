#!/usr/bin/env node
/**
 * The package as a user gets it, on every supported Node line: `npm pack`
 * (prepack builds), install the tarball into an empty folder, and drive the
 * installed CLI with Node 22, 24 and 26 (fetched from the npm registry, the
 * `node` package) and this machine's Node:
 *
 *   beam --version            the package's version
 *   beam <port> --port 0      the embedded default serves the origin through its link
 *   beam connect <link>       the share as a local port
 *   beam serve + beam http    a browser navigation gets the page, and its script is served
 *
 * Usage: node .ci/pack-smoke.mjs [22 24 26 22.11.0 ...]   (lines or releases; default: 22 24 26)
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const lines = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['22', '24', '26'];
const work = mkdtempSync(path.join(tmpdir(), 'beam-pack-'));
const npm = (args, cwd) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, stdio: ['ignore', 'pipe', 'inherit'] }).toString();
const say = (text) => process.stdout.write(`${text}\n`);

say(`packing ${root}`);
const tarball = path.join(work, JSON.parse(npm(['pack', '--json', '--pack-destination', work], root))[0].filename);
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const app = path.join(work, 'app');
mkdirSync(app);
writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'smoke', private: true }));
say(`installing ${path.basename(tarball)} into an empty folder`);
npm(['install', tarball], app);
const bin = path.join(app, 'node_modules', pkg.name, 'bin', 'beam.js');
if (!existsSync(bin)) throw new Error(`the package has no ${path.relative(app, bin)}`);

/** A Node binary of a line or a release, from the npm registry's `node` package (.ci/node.sh, which caches it). */
function nodeOf(line) {
  if (line === 'machine') return process.execPath;
  const bin = execFileSync('bash', [path.join(root, '.ci', 'node.sh'), line], { stdio: ['ignore', 'pipe', 'inherit'] })
    .toString()
    .trim();
  return path.join(bin, 'node');
}

/** Starts `beam` with a Node binary; resolves with its first JSON event that `match`es. */
function beam(node, args, match) {
  const child = spawn(node, [bin, ...args], {
    cwd: app,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BEAM_SERVER: '', BEAM_CONFIG_DIR: path.join(work, 'config') },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const event = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const e = JSON.parse(line);
        if (match(e)) resolve(e);
      } catch {
        // not JSON
      }
    });
    child.once('exit', (code) => reject(new Error(`beam ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`)));
  });
  return { child, event };
}

function get(port, host, pathname, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: pathname, headers: { host, ...headers }, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}

function expect(ok, what) {
  if (!ok) throw new Error(what);
}

const origin = http.createServer((req, res) => res.end(`smoke ${req.url}`));
await new Promise((resolve) => origin.listen(0, '127.0.0.1', resolve));
const originPort = origin.address().port;
const stop = (child) =>
  new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });

let failed = false;
for (const line of ['machine', ...lines]) {
  const node = nodeOf(line);
  const version = execFileSync(node, ['--version']).toString().trim();
  const started = [];
  try {
    const run = spawnSync(node, [bin, '--version'], { cwd: app, encoding: 'utf8' });
    const printed = run.stdout.trim();
    expect(printed === pkg.version, `beam --version printed ${printed}, not ${pkg.version}`);
    // Nothing on stderr: a V8 flag the launcher sets for one Node line (bin/beam.js) that this line lacks would print here.
    expect(run.stderr === '', `beam --version wrote to stderr: ${run.stderr}`);

    // The embedded default.
    const share = beam(node, [String(originPort), '--json', '--port', '0', '--no-inspect'], (e) => e.event === 'ready');
    started.push(share.child);
    const ready = await share.event;
    const url = new URL(ready.url);
    const res = await get(Number(url.port), url.host, '/embedded');
    expect(res.status === 200 && res.body === 'smoke /embedded', `the embedded link answered ${res.status} ${res.body}`);

    // beam connect on that share.
    const visitor = beam(node, ['connect', ready.link, '--json'], (e) => e.event === 'ready');
    started.push(visitor.child);
    const local = new URL((await visitor.event).url);
    const viaConnect = await get(Number(local.port), local.host, '/connect');
    expect(viaConnect.status === 200 && viaConnect.body === 'smoke /connect', `beam connect answered ${viaConnect.status} ${viaConnect.body}`);

    // A server of one's own: a browser navigation gets the page, and the page's script is in the package.
    const server = beam(node, ['serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'error'], (e) => e.event === 'ready');
    started.push(server.child);
    const serverPort = (await server.event).port;
    const agent = beam(node, ['http', String(originPort), '--server', `http://127.0.0.1:${serverPort}`, '--json', '--no-inspect'], (e) => e.event === 'ready');
    started.push(agent.child);
    const name = (await agent.event).name;
    const host = `${name}.localhost:${serverPort}`;
    const page = await get(serverPort, host, '/', { accept: 'text/html', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' });
    expect(page.status === 200 && page.body.includes('beam-config'), `a browser navigation got ${page.status}, not the page`);
    const script = /["']([^"']*\/page\.js)["']/.exec(page.body)?.[1];
    expect(script !== undefined, 'the page names no script');
    const asset = await get(serverPort, host, script);
    expect(asset.status === 200 && asset.body.length > 10_000, `the page's script answered ${asset.status}`);
    const app_ = await get(serverPort, host, '/curl');
    expect(app_.body === 'smoke /curl', 'curl did not get the app through the gateway');
    say(`ok   Node ${version}: --version, the embedded default, beam connect, beam serve with the browser page`);
  } catch (err) {
    failed = true;
    say(`FAIL Node ${version}: ${err.message}`);
  } finally {
    for (const child of started.reverse()) await stop(child);
  }
}
origin.close();
process.exit(failed ? 1 : 0);
