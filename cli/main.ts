/** The `beam` command line. */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { createSecureContext } from 'node:tls';
import { Command, Option } from 'commander';
import { type Logger, pino } from 'pino';
import { connect } from '../app/connect.js';
import {
  parseCount,
  parseEngine,
  parseHostHeader,
  parseInspect,
  parseLogLevel,
  parseMs,
  parsePort,
  parseRedisUrl,
  parseRelayMode,
  parseServerUrl,
  parseTarget,
} from '../app/options.js';
import { type Share, share, startEmbedded } from '../app/share.js';
import { BEAM_VERSION } from '../app/version.js';
import { startBeamServer } from '../gateway/server.js';
import type { SessionInfo } from '../peer-agent/agent.js';
import {
  DEFAULT_EMBEDDED_PORT,
  DEFAULT_INSPECT_PORT,
  DEFAULT_ORIGIN_TIMEOUT_MS,
  GATEWAY_MAX_CONNECTIONS_PER_IP,
  MAX_CONNECTIONS_PER_IP,
  ORIGIN_WAIT_POLL_MS,
  REGISTRATIONS_PER_IP_PER_MINUTE,
  RTT_REFRESH_MS,
  SESSIONS_PER_IP_PER_MINUTE,
} from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { ShareKind } from '../shared/signaling.js';
import { validateIceConfig } from '../signaling/ice.js';
import { AgentTokens } from '../signaling/tokens.js';
import { loadEngine } from '../transport/index.js';
import { loadConfig } from './config.js';
import { createConnectView } from './connect-view.js';
import { COMMON_DEV_PORTS, detectDevServer, isListening } from './detect.js';
import { describeReport, doctor } from './doctor.js';
import { applyEnv } from './env.js';
import { createOutput, type Output } from './output.js';
import { createTerminalOutput } from './tui.js';

interface CommonFlags {
  json?: boolean;
  logLevel: string;
  engine: string;
}
interface HttpFlags extends CommonFlags {
  server?: string;
  name?: string;
  hostHeader: string;
  originTimeout?: string;
  relay: string;
  private?: boolean;
  auth?: string;
  allowIp?: string[];
  denyIp?: string[];
  rateLimit?: string;
  maxVisitors?: string;
  token?: string;
  /** --inspect <port> (a string), --no-inspect (false), or neither (undefined). */
  inspect?: string | boolean;
  tls?: boolean;
  /** The embedded server's port. */
  port?: string;
  /** `beam` alone: the ports to look for a listening dev server on (comma-separated). */
  devPorts?: string;
}
interface ServeFlags extends CommonFlags {
  port: string;
  host: string;
  domain: string;
  publicUrl?: string;
  stun?: string[];
  turn?: string[];
  turnSecret?: string;
  /** false with --no-compress. */
  compress: boolean;
  /** false with --no-browser-p2p. */
  browserP2p: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
  trustProxy?: boolean;
  redis?: string;
  nodeUrl?: string;
  maxConnectionsPerIp?: string;
  maxHttpConnectionsPerIp?: string;
  registrationsPerMinute?: string;
  sessionsPerMinute?: string;
}
interface StartFlags extends CommonFlags {
  config: string;
  server?: string;
  token?: string;
  inspect?: string | boolean;
}
interface ConnectFlags extends CommonFlags {
  port: string;
  bind: string;
  relay: string;
  server?: string;
  allowHost?: string[];
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function logger(level: string): Logger {
  return pino({ level: parseLogLevel(level), base: { pid: process.pid } }, pino.destination(2));
}

function onStop(run: () => Promise<void> | void): void {
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(130);
    stopping = true;
    void Promise.resolve(run()).finally(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/** JSON events; the terminal UI on a terminal; plain lines otherwise. */
function outputFor(json: boolean): Output & { progress?: (text: string) => void } {
  if (json) return createOutput(true);
  return process.stdout.isTTY ? createTerminalOutput(process.stdout) : createOutput(false);
}

async function runHttp(targetArg: string, flags: HttpFlags, kind: ShareKind = 'http', out = outputFor(Boolean(flags.json))): Promise<void> {
  out.progress?.(`Connecting to ${flags.server || 'the embedded server'}…`);
  const inspect = parseInspect(flags.inspect, true);
  const shared = await share({
    target: targetArg,
    kind,
    server: flags.server || undefined,
    name: flags.name,
    token: flags.token,
    hostHeader: parseHostHeader(flags.hostHeader),
    originTimeoutMs: flags.originTimeout ? parseMs(flags.originTimeout, '--origin-timeout') : undefined,
    relay: parseRelayMode(flags.relay),
    private: flags.private,
    tls: flags.tls,
    auth: flags.auth,
    allowIp: flags.allowIp,
    denyIp: flags.denyIp,
    rateLimit: flags.rateLimit,
    maxVisitors: flags.maxVisitors !== undefined ? parseCount(flags.maxVisitors, '--max-visitors') : undefined,
    inspect,
    ...(flags.port !== undefined ? { port: flags.port === '0' ? 0 : parsePort(flags.port, '--port') } : {}),
    engine: parseEngine(flags.engine),
    logger: logger(flags.logLevel),
  });
  // Ctrl+C from here on closes the share cleanly (freeing its name), even before 'ready' is out.
  let stopWatching = (): void => {};
  onStop(async () => {
    stopWatching();
    await shared.close();
    out.emit({ event: 'closed' });
  });
  stopWatching = await report(shared, out, targetArg);
}

/**
 * Prints a share's ready event, then its visitors and troubles as they come.
 * While the origin is down it checks the port, and says when it is up.
 * Returns what stops that check.
 */
async function report(shared: Share, out: Output, target: string): Promise<() => void> {
  const origin = parseTarget(target);
  let watcher: NodeJS.Timeout | undefined;
  let stopped = false;
  const watchOrigin = (): void => {
    if (watcher || stopped || shared.kind === 'udp') return;
    watcher = setInterval(() => {
      void isListening(origin.port, origin.host).then((up) => {
        if (!up || !watcher) return;
        clearInterval(watcher);
        watcher = undefined;
        out.emit({ event: 'origin-ready', origin: shared.origin });
      });
    }, ORIGIN_WAIT_POLL_MS);
  };
  const paths = new Map<string, string>();
  const visitorEvent = (event: 'session' | 'path', s: SessionInfo): void => {
    paths.set(s.id, s.path);
    out.emit({ event, id: s.id, visitor: s.visitor, path: s.path, via: s.via, ...(s.rtt !== undefined ? { rtt: round(s.rtt) } : {}) });
  };
  shared.on('session', (s) => visitorEvent('session', s));
  shared.on('path', (s) => visitorEvent('path', s));
  shared.on('session-closed', (s) => {
    out.emit({ event: 'session-closed', id: s.id, path: paths.get(s.id) ?? 'gateway' });
    paths.delete(s.id);
  });
  shared.on('origin-unreachable', (e) => {
    out.emit({ event: 'origin-unreachable', ...e });
    watchOrigin();
  });
  shared.on('reconnecting', (e) => out.emit({ event: 'reconnecting', reason: e.reason }));
  shared.on('error', (err) => out.emit({ event: 'error', code: err.code, message: err.message }));
  shared.on('resumed', (r) => out.emit({ event: 'ready', name: r.name, url: r.url, origin: shared.origin, server: shared.server, resumed: true }));
  out.emit({
    event: 'ready',
    name: shared.name,
    url: shared.url,
    link: shared.link,
    ...(shared.lan ? { lan: shared.lan } : {}),
    origin: shared.origin,
    server: shared.server,
    ...(shared.inspect ? { inspect: shared.inspect } : {}),
    ...(shared.kind !== 'http' ? { kind: shared.kind } : {}),
    ...(shared.ca ? { ca: shared.ca } : {}),
  });
  if (shared.kind !== 'udp' && !(await isListening(origin.port, origin.host))) {
    out.emit({ event: 'origin-unreachable', origin: shared.origin, code: 'ECONNREFUSED' });
    watchOrigin();
  }
  return () => {
    stopped = true;
    clearInterval(watcher);
    watcher = undefined;
  };
}

/** `beam` with no port: the dev server package.json declares, or the one listening. */
async function runDetected(flags: HttpFlags): Promise<void> {
  const ports = flags.devPorts === undefined ? COMMON_DEV_PORTS : parsePortList(flags.devPorts, '--dev-ports');
  const { detected, candidates } = await detectDevServer(process.cwd(), ports);
  if (!detected) {
    throw new BeamError(
      'BEAM_ERR_BAD_OPTION',
      candidates.length > 1
        ? `no port given, and several dev servers are listening (${candidates.join(', ')}): pick one, e.g. \`beam ${candidates[0]}\``
        : 'no port given, and no dev server in package.json nor listening on the usual ports: name one, e.g. `beam 3000` (or see `beam --help`)',
    );
  }
  const out = outputFor(Boolean(flags.json));
  out.emit({ event: 'detected', ...detected });
  await runHttp(String(detected.port), flags, 'http', out);
}

/** `beam start`: every share in beam.yml, on one server (an embedded one by default). */
async function runStart(flags: StartFlags): Promise<void> {
  const json = Boolean(flags.json);
  const config = await loadConfig(flags.config);
  const log = logger(flags.logLevel);
  const engineName = parseEngine(flags.engine);
  const serverFlag = flags.server || config.server;
  const inspect = parseInspect(flags.inspect, config.inspect);
  // Several shares, one server: the embedded one serves them all (no default share: each Host names one).
  const embedded = serverFlag ? undefined : await startEmbedded({ engine: await loadEngine(engineName), logger: log }, () => undefined);
  const server = serverFlag ? parseServerUrl(serverFlag) : `http://127.0.0.1:${embedded?.port}`;
  const started: Share[] = [];
  const watchers: Array<() => void> = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of watchers) stop();
    for (const s of started.reverse()) await s.close();
    await embedded?.close();
  };
  onStop(async () => {
    await stopAll();
    createOutput(json).emit({ event: 'closed' });
  });
  for (const c of config.shares) {
    let s: Share;
    try {
      // A fixed inspector port can serve one share only: the next HTTP shares take the ports after it.
      const port = typeof inspect === 'number' && inspect !== 0 ? inspect + started.filter((x) => x.inspect).length : inspect;
      s = await share({ ...c.options, server, token: flags.token ?? config.token, engine: engineName, logger: log, inspect: port });
    } catch (err) {
      await stopAll();
      if (err instanceof BeamError) throw new BeamError(err.code, `share "${c.label}": ${err.detail ?? err.message}`);
      throw err;
    }
    started.push(s);
    watchers.push(await report(s, createOutput(json, process.stdout, c.label), c.options.target as string));
  }
  if (!json) createOutput(false).line('Press Ctrl+C to stop.');
}

/**
 * Share links are `<name>.<host>`: a server named by an IP address has no
 * names under it, so its links could not name a share. Refused at start,
 * with what to do instead.
 */
function refuseAddressHost(host: string, flag: string): void {
  const bare = host.replace(/^\[|\]$/g, '');
  if (net.isIP(bare) === 0) return;
  throw new BeamError(
    'BEAM_ERR_BAD_OPTION',
    `${flag} names the IP address ${host}: share links are <name>.<host>, and an IP address has no names under it. ` +
      `Point a wildcard DNS name at the address (*.beam.example.com and beam.example.com -> ${bare}) and pass that name (--public-url http://beam.example.com:<port>, or --domain beam.example.com)`,
  );
}

async function runServe(flags: ServeFlags): Promise<void> {
  const out = createOutput(Boolean(flags.json));
  const port = flags.port === '0' ? 0 : parsePort(flags.port, '--port');
  const log = logger(flags.logLevel);
  if (flags.publicUrl) refuseAddressHost(new URL(parseServerUrl(flags.publicUrl)).hostname, '--public-url');
  const domain = flags.domain.toLowerCase();
  if (!/^[a-z0-9.-]+$/.test(domain)) throw new BeamError('BEAM_ERR_BAD_OPTION', `--domain "${flags.domain}" is not a domain name`);
  refuseAddressHost(domain, '--domain');
  const ice = validateIceConfig({ stun: flags.stun ?? [], turn: flags.turn ?? [], turnSecret: flags.turnSecret });
  const engine = await loadEngine(parseEngine(flags.engine));
  const tokens = flags.tokenFile ? await AgentTokens.load(flags.tokenFile) : undefined;
  const tls = await loadTls(flags.tlsCert, flags.tlsKey);
  const limits = {
    ...(flags.maxConnectionsPerIp ? { connections: parseCount(flags.maxConnectionsPerIp, '--max-connections-per-ip') } : {}),
    ...(flags.registrationsPerMinute ? { registrationsPerMinute: parseCount(flags.registrationsPerMinute, '--registrations-per-minute') } : {}),
    ...(flags.sessionsPerMinute ? { sessionsPerMinute: parseCount(flags.sessionsPerMinute, '--sessions-per-minute') } : {}),
  };
  const maxHttp =
    flags.maxHttpConnectionsPerIp === undefined
      ? undefined
      : flags.maxHttpConnectionsPerIp === '0'
        ? 0
        : parseCount(flags.maxHttpConnectionsPerIp, '--max-http-connections-per-ip');
  const server = await startBeamServer(
    { engine, logger: log },
    {
      port,
      host: flags.host,
      domain,
      publicUrl: flags.publicUrl,
      ...(maxHttp !== undefined ? { maxConnectionsPerIp: maxHttp } : {}),
      ice,
      compress: flags.compress,
      browserP2p: flags.browserP2p,
      ...(tls ? { tls } : {}),
      tokens,
      limits,
      trustProxy: flags.trustProxy ?? false,
      ...(flags.redis ? { redis: parseRedisUrl(flags.redis) } : {}),
      ...(flags.nodeUrl ? { nodeUrl: parseServerUrl(flags.nodeUrl, '--node-url') } : {}),
    },
  );
  const url = flags.publicUrl ?? `${tls ? 'https' : 'http'}://${domain}:${server.port}`;
  if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'ready', url, port: server.port, domain })}\n`);
  else out.line(`Beam server listening on ${flags.host}:${server.port}; shares are ${server.shareUrl('share-name').replace('share-name.', '<name>.')}`);
  onStop(async () => {
    const inFlight = server.gateway.requestsInFlight;
    // drain() stops accepting before it returns its promise: announce only then.
    const drained = server.drain();
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'draining', requests: inFlight })}\n`);
    else out.line(`Draining ${inFlight} request(s) in flight...`);
    await drained;
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'closed' })}\n`);
  });
}

/** --tls-cert and --tls-key, read and checked together: a key that does not match is BEAM_ERR_BAD_OPTION now, not at the first visitor. */
async function loadTls(certFile: string | undefined, keyFile: string | undefined): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--tls-cert and --tls-key go together: pass both, or neither for plain http');
  const read = async (file: string, flag: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const cert = await read(certFile, '--tls-cert');
  const key = await read(keyFile, '--tls-key');
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new BeamError(
      'BEAM_ERR_BAD_OPTION',
      `--tls-cert ${certFile} / --tls-key ${keyFile}: ${(err as Error).message} (PEM files, the key matching the certificate)`,
    );
  }
  return { cert, key };
}

async function runConnect(linkArg: string, flags: ConnectFlags): Promise<void> {
  const view = createConnectView(Boolean(flags.json));
  const port = flags.port === '0' ? 0 : parsePort(flags.port, '--port');
  const relay = parseRelayMode(flags.relay);
  const server = flags.server ? parseServerUrl(flags.server) : undefined;
  const log = logger(flags.logLevel);
  const engine = await loadEngine(parseEngine(flags.engine));
  const connected = await connect(
    { engine, logger: log },
    { link: linkArg, port, bind: flags.bind, relay, server, allowHosts: (flags.allowHost ?? []).map((h) => parseAllowedHost(h)) },
  );
  // ready first, then the path it is on, then each change (the --json contract).
  view.ready({
    share: connected.share,
    url: connected.url,
    origin: connected.origin,
    server: connected.server,
    verified: connected.verified,
    path: connected.path,
  });
  if (connected.path) view.path(connected.path, true);
  connected.on('path', (info) => view.path(info, false));
  const rtt = setInterval(() => view.rtt(connected.rtt), RTT_REFRESH_MS);
  rtt.unref();
  onStop(async () => {
    clearInterval(rtt);
    await connected.close();
    view.closed();
  });
}

/** A comma-separated list of ports, each 1-65535. */
function parsePortList(text: string, what: string): number[] {
  const ports = text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => parsePort(p, what));
  if (ports.length === 0) throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} names no port: give them comma-separated, e.g. 5173,3000`);
  return ports;
}

/** An --allow-host name: a host name or address, with an optional port, as a Host header carries it. */
function parseAllowedHost(text: string): string {
  const host = text.trim().toLowerCase();
  if (!/^([a-z0-9-]+(\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\])(:\d{1,5})?$/.test(host)) {
    throw new BeamError(
      'BEAM_ERR_BAD_OPTION',
      `--allow-host ${JSON.stringify(text)}: give a host name as the browser sends it, e.g. dev.example.test or dev.example.test:8080`,
    );
  }
  return host;
}

async function runDoctor(flags: { server?: string; json?: boolean }): Promise<void> {
  const serverFlag = flags.server;
  if (!serverFlag) throw new BeamError('BEAM_ERR_BAD_OPTION', 'beam doctor needs --server <url> (or BEAM_SERVER): the server whose STUN and relay to check');
  const report = await doctor(parseServerUrl(serverFlag));
  if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'doctor', ...report })}\n`);
  else process.stdout.write(`${describeReport(report)}\n`);
}

function fail(err: unknown, json: boolean): never {
  const out: Output = createOutput(json, json ? process.stdout : process.stderr);
  if (err instanceof BeamError) out.emit({ event: 'error', code: err.code, message: err.message });
  else out.emit({ event: 'error', code: 'BEAM_ERR_BAD_REQUEST', message: (err as Error).message ?? String(err) });
  process.exit(1);
}

function httpCommand(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'Beam server to register with (env BEAM_SERVER); default: an embedded server in this process')
    .option('--port <port>', `port of the embedded server (default ${DEFAULT_EMBEDDED_PORT}, else the next free one; 0: any free one)`)
    .option('--name <name>', 'share name to ask for (default: a random adjective-noun-NNN)')
    .option('--token <token>', 'agent token, for a server started with --token-file')
    .option('--json', 'print newline-delimited JSON events on stdout')
    .addOption(new Option('--log-level <level>', 'pino log level on stderr').default('warn'))
    .addOption(new Option('--engine <engine>', 'WebRTC engine: node-datachannel or werift').default('node-datachannel'))
    .addOption(new Option('--host-header <mode>', "rewrite the Host header to the origin's (rewrite) or keep the visitor's (preserve)").default('rewrite'))
    .option('--origin-timeout <ms>', `how long to wait for the origin's response head (default ${DEFAULT_ORIGIN_TIMEOUT_MS})`)
    .addOption(new Option('--relay <mode>', 'auto: direct WebRTC, else the relay; never: direct only; always: relay only').default('auto'))
    .option('--private', 'only visitors with the full link (it carries a secret) get in')
    .option('--tls', 'the embedded server serves https, with a certificate from a local authority teammates trust once (browsers on the LAN get peer to peer)')
    .option('--auth <user:password>', 'HTTP basic auth for every visitor (env BEAM_AUTH)')
    .option('--allow-ip <cidr...>', 'only visitors from these addresses or ranges get in')
    .option('--deny-ip <cidr...>', 'visitors from these addresses or ranges are refused')
    .option('--rate-limit <N/min>', 'requests per visitor (also N/s, N/h); over it: 429')
    .option('--max-visitors <n>', 'visitors at once (a peer-to-peer session, or a gateway client address until quiet for a minute); over it: 503')
    .option('--inspect <port>', `inspector web UI on 127.0.0.1:<port> (env BEAM_INSPECT; default ${DEFAULT_INSPECT_PORT}, else the next free port)`)
    .option('--no-inspect', 'no inspector: requests are not recorded');
}

export function program(): Command {
  const root = new Command('beam')
    .description(
      'Share a local port peer to peer. `beam 3000` is short for `beam http 3000`.\nEvery flag is also an environment variable: --log-level is BEAM_LOG_LEVEL, --private is BEAM_PRIVATE=1.',
    )
    .argument('[port]', 'local port (or host:port) to share over HTTP')
    .option('--dev-ports <ports>', `with no port: where to look for a listening dev server, comma-separated (default ${COMMON_DEV_PORTS.join(',')})`)
    .version(BEAM_VERSION, '-V, --version', "print Beam's version");
  httpCommand(root).action(async (port: string | undefined, flags: HttpFlags) => {
    await (port ? runHttp(port, flags) : runDetected(flags)).catch((err: unknown) => fail(err, Boolean(flags.json)));
  });
  httpCommand(root.command('http').description('share a local HTTP server').argument('<target>', 'port or host:port')).action(
    async (target: string, flags: HttpFlags) => {
      await runHttp(target, flags).catch((err: unknown) => fail(err, Boolean(flags.json)));
    },
  );
  httpCommand(
    root
      .command('tcp')
      .description('share a local TCP service (a database, SSH, ...): teammates open it with `beam connect`')
      .argument('<target>', 'port or host:port'),
  ).action(async (target: string, flags: HttpFlags) => {
    await runHttp(target, flags, 'tcp').catch((err: unknown) => fail(err, Boolean(flags.json)));
  });
  httpCommand(
    root
      .command('udp')
      .description('share a local UDP service (DNS, a game server, ...): teammates open it with `beam connect`')
      .argument('<target>', 'port or host:port'),
  ).action(async (target: string, flags: HttpFlags) => {
    await runHttp(target, flags, 'udp').catch((err: unknown) => fail(err, Boolean(flags.json)));
  });
  root
    .command('serve')
    .description('run the signaling server and gateway for a public host')
    .addOption(new Option('--port <port>', 'port to listen on').default(String(DEFAULT_EMBEDDED_PORT)))
    .addOption(new Option('--host <address>', 'address to bind').default('0.0.0.0'))
    .addOption(new Option('--domain <domain>', 'shares become <name>.<domain>').default('localhost'))
    .option('--public-url <url>', 'the public URL of this server, e.g. https://beam.example.com')
    .option('--json', 'print newline-delimited JSON events on stdout')
    .addOption(new Option('--log-level <level>', 'pino log level on stderr').default('info'))
    .addOption(new Option('--engine <engine>', 'WebRTC engine for the gateway').default('node-datachannel'))
    .option('--stun <url...>', 'STUN servers handed to peers, e.g. stun:stun.example.com:3478')
    .option('--turn <url...>', 'TURN servers handed to peers, e.g. turn:turn.example.com:3478?transport=udp')
    .option('--turn-secret <secret>', "the TURN server's static-auth-secret, for time-limited REST credentials (env BEAM_TURN_SECRET)")
    .option('--no-compress', 'send responses as the origin sent them (default: brotli or gzip for text, when the client accepts it)')
    .option('--tls-cert <file>', 'serve https with this certificate chain (PEM), e.g. a wildcard certificate for *.<domain>')
    .option('--tls-key <file>', 'the private key (PEM) of --tls-cert')
    .option('--no-browser-p2p', 'send browsers through the gateway as curl (default: a browser that opens a share reaches the agent peer to peer)')
    .option('--token-file <file>', 'agents must present a token from this file; a token may reserve share names (one token a line, then its names)')
    .option('--trust-proxy', 'behind a reverse proxy: take the client address and scheme from its X-Forwarded-For and X-Forwarded-Proto')
    .option('--redis <url>', 'run as one of several nodes sharing this Redis (e.g. redis://127.0.0.1:6379): names and signaling span the nodes')
    .option('--max-connections-per-ip <n>', `signaling connections one client address may hold (default ${MAX_CONNECTIONS_PER_IP})`)
    .option(
      '--max-http-connections-per-ip <n>',
      `TCP connections one client address may hold to the gateway at once; 0: no cap (default ${GATEWAY_MAX_CONNECTIONS_PER_IP}, none with --trust-proxy)`,
    )
    .option('--registrations-per-minute <n>', `shares one client address may register a minute (default ${REGISTRATIONS_PER_IP_PER_MINUTE})`)
    .option('--sessions-per-minute <n>', `sessions one client address may open a minute (default ${SESSIONS_PER_IP_PER_MINUTE})`)
    .option('--node-url <url>', "with --redis: this node's own URL (on the public host or below it), where relayed sessions it sets up meet")
    .action(async (flags: ServeFlags) => {
      await runServe(flags).catch((err: unknown) => fail(err, Boolean(flags.json)));
    });
  root
    .command('start')
    .description('run every share declared in a config file (beam.yml)')
    .addOption(new Option('--config <file>', 'the config file').default('beam.yml'))
    .option('--server <url>', "Beam server for every share (overrides the file's `server`); default: one embedded server")
    .option('--token <token>', "agent token, for a server with --token-file (overrides the file's `token`)")
    .option('--inspect <port>', "first inspector port (the file's `inspect` otherwise)")
    .option('--no-inspect', 'no inspector for any share')
    .option('--json', 'print newline-delimited JSON events on stdout, each with `share`: its label in the file')
    .addOption(new Option('--log-level <level>', 'pino log level on stderr').default('warn'))
    .addOption(new Option('--engine <engine>', 'WebRTC engine: node-datachannel or werift').default('node-datachannel'))
    .addHelpText(
      'after',
      `
beam.yml:
  server: https://beam.example.com   # optional; default: one embedded server
  inspect: true                      # true (4040, else the next free port), a port, or false
  shares:
    web:                             # a label of yours
      http: 3000                     # exactly one of http / tcp / udp: a port or host:port
      name: my-app                   # and any flag of beam http/tcp/udp by its long name:
      auth: alice:s3cret             #   name, private, auth, allow-ip, deny-ip, rate-limit,
    db:                              #   max-visitors, relay, host-header, origin-timeout
      tcp: 5432
      private: true`,
    )
    .action(async (flags: StartFlags) => {
      await runStart(flags).catch((err: unknown) => fail(err, Boolean(flags.json)));
    });
  root
    .command('connect')
    .description('open a share as a local port, peer to peer')
    .argument('<link>', "the share's link, as `beam` printed it (with #peer=... to verify the agent)")
    .addOption(new Option('--port <port>', 'local port (0: any free one)').default('0'))
    .addOption(new Option('--bind <address>', 'local address to listen on').default('127.0.0.1'))
    .addOption(new Option('--relay <mode>', 'auto: direct WebRTC, else the relay; never: direct only; always: relay only').default('auto'))
    .option('--server <url>', 'Beam server to use instead of the one the link names')
    .option('--allow-host <name...>', 'an HTTP share answers only Host localhost, 127.0.0.1, [::1] (and the --bind address); also answer these names')
    .option('--json', 'print newline-delimited JSON events on stdout')
    .addOption(new Option('--log-level <level>', 'pino log level on stderr').default('warn'))
    .addOption(new Option('--engine <engine>', 'WebRTC engine: node-datachannel or werift').default('node-datachannel'))
    .action(async (link: string, flags: ConnectFlags) => {
      await runConnect(link, flags).catch((err: unknown) => fail(err, Boolean(flags.json)));
    });
  root
    .command('version')
    .description("print Beam's version")
    .action(() => {
      process.stdout.write(`${BEAM_VERSION}\n`);
    });
  root
    .command('doctor')
    .description('check UDP, NAT mapping and the relay: which path visitors are likely to get')
    .option('--server <url>', 'Beam server to check against (env BEAM_SERVER)')
    .option('--json', 'print the report as one JSON line')
    .action(async (flags: { server?: string; json?: boolean }) => {
      await runDoctor(flags).catch((err: unknown) => fail(err, Boolean(flags.json)));
    });
  root.enablePositionalOptions();
  // Every flag is also a BEAM_* variable (cli/env.ts), read before each command runs.
  root.hook('preAction', (_root, command) => {
    try {
      applyEnv(command);
    } catch (err) {
      fail(err, command.getOptionValue('json') === true || process.env['BEAM_JSON'] === '1');
    }
  });
  return root;
}

// A reader that went away (`beam 3000 --json | head -1`, a parent that died):
// what Beam would print now goes nowhere, and the share keeps running. Without
// this, the next event written (a session, or `closed` at Ctrl+C) crashed it.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
});

await program().parseAsync(process.argv);
