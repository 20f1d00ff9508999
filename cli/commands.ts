/**
 * What each `beam` command does, loaded only when one runs: `beam --help`
 * and `beam --version` never load WebRTC, Noise, socket.io or the server
 * (cli/main.ts defines the commands with light imports alone).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { createSecureContext } from 'node:tls';
import { type Logger, pino } from 'pino';
import { lanAddress } from '../app/lan.js';
import {
  parseAppProtocol,
  parseBrowserFirstLoad,
  parseCount,
  parseDuration,
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
import type { Share, ShareOptions } from '../app/share.js';
import type { SessionInfo } from '../peer-agent/agent.js';
import { MAX_RELAY_CAP_SECONDS, ORIGIN_WAIT_POLL_MS, RTT_REFRESH_MS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { ShareKind } from '../shared/signaling.js';
import { validateIceConfig } from '../signaling/ice.js';
import { AgentTokens } from '../signaling/tokens.js';
import { loadLibp2p, parseBackendName } from '../transport/backend.js';
import { loadEngine } from '../transport/index.js';
import { createConnectView } from './connect-view.js';
import { COMMON_DEV_PORTS, detectDevServer, detectFromPackageJson, isListening } from './detect.js';
import { createOutput, type Output } from './output.js';
import { tierForNetwork } from './tiering.js';
import { createTerminalOutput } from './tui.js';

/**
 * The sharing side (the agent, its inspector, the embedded server's starter),
 * loaded by the commands that share: `beam connect` and `beam serve` never
 * need it, and loading it cost `beam connect` ~25 ms of its start.
 */
const loadShare = (): Promise<typeof import('../app/share.js')> => import('../app/share.js');

export interface CommonFlags {
  json?: boolean;
  logLevel: string;
  engine: string;
}
export interface HttpFlags extends CommonFlags {
  server?: string;
  via: string;
  /** Repeatable; from the environment, one a line. */
  bootstrap?: string[] | string;
  stun?: string[] | string;
  lan?: boolean;
  name?: string;
  hostHeader: string;
  originTimeout?: string;
  appProtocol: string;
  originCa?: string;
  originInsecure?: boolean;
  /** Repeatable; from the environment, one a line. */
  requestHeaderAdd?: string[] | string;
  requestHeaderRemove?: string[] | string;
  responseHeaderAdd?: string[] | string;
  responseHeaderRemove?: string[] | string;
  oidc?: string;
  oauth?: string;
  oauthUrl?: string;
  oidcClientId?: string;
  oidcClientSecret?: string;
  oidcScopes?: string;
  oidcSession?: string;
  oidcAllowEmail?: string[];
  oidcAllowDomain?: string[];
  verifyWebhook?: string;
  verifyWebhookSecret?: string;
  verifyWebhookHeader?: string;
  relay: string;
  private?: boolean;
  pool?: boolean;
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
export interface ServeFlags extends CommonFlags {
  port: string;
  host: string;
  domain: string;
  publicUrl?: string;
  /** --stun <url...>, or false with --no-stun. */
  stun?: string[] | boolean;
  /** --stun-port: the UDP port of the server's own STUN. */
  stunPort?: string;
  turn?: string[];
  turnSecret?: string;
  /** false with --no-compress. */
  compress: boolean;
  /** false with --no-browser-p2p. */
  browserP2p: boolean;
  /** --browser-first-load frame|top. */
  browserFirstLoad?: string;
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
  relayMaxMib?: string;
  relayMaxSeconds?: string;
  warmLinks?: string;
  gatewayRelay: string;
}
export interface StartFlags extends CommonFlags {
  config: string;
  server?: string;
  token?: string;
  inspect?: string | boolean;
}
export interface ConnectFlags extends CommonFlags {
  port: string;
  bind: string;
  relay: string;
  server?: string;
  allowHost?: string[];
  stun?: string[] | string;
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

/** A repeatable flag's values; a BEAM_* variable gives them one a line (a header value may hold commas). */
function lines(value: string[] | string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value.split(/\r?\n/).filter((l) => l.trim() !== '') : value;
}

/** JSON events; the terminal UI on a terminal; plain lines otherwise. */
function outputFor(json: boolean): Output & { progress?: (text: string) => void } {
  if (json) return createOutput(true);
  return process.stdout.isTTY ? createTerminalOutput(process.stdout) : createOutput(false);
}

/** The share() options a `beam http|tcp|udp|run` command line asks for. `embeddedPort`: whether --port is the embedded server's. */
function shareOptions(target: string, flags: HttpFlags, kind: ShareKind, embeddedPort = true): ShareOptions {
  return {
    target,
    kind,
    server: flags.server || undefined,
    via: parseBackendName(flags.via ?? 'server'),
    bootstrap: lines(flags.bootstrap),
    stun: lines(flags.stun),
    name: flags.name,
    token: flags.token,
    hostHeader: parseHostHeader(flags.hostHeader),
    originTimeoutMs: flags.originTimeout ? parseMs(flags.originTimeout, '--origin-timeout') : undefined,
    appProtocol: parseAppProtocol(flags.appProtocol),
    originCa: flags.originCa,
    originInsecure: flags.originInsecure,
    requestHeaderAdd: lines(flags.requestHeaderAdd),
    requestHeaderRemove: lines(flags.requestHeaderRemove),
    responseHeaderAdd: lines(flags.responseHeaderAdd),
    responseHeaderRemove: lines(flags.responseHeaderRemove),
    oidc: flags.oidc,
    oauth: flags.oauth,
    oauthUrl: flags.oauthUrl,
    oidcClientId: flags.oidcClientId,
    oidcClientSecret: flags.oidcClientSecret,
    oidcScopes: flags.oidcScopes,
    oidcSessionMs: flags.oidcSession !== undefined ? parseDuration(flags.oidcSession, '--oidc-session') : undefined,
    oidcAllowEmail: flags.oidcAllowEmail,
    oidcAllowDomain: flags.oidcAllowDomain,
    verifyWebhook: flags.verifyWebhook,
    verifyWebhookSecret: flags.verifyWebhookSecret,
    verifyWebhookHeader: flags.verifyWebhookHeader,
    relay: parseRelayMode(flags.relay),
    private: flags.private,
    pool: flags.pool,
    lan: flags.lan,
    tls: flags.tls,
    auth: flags.auth,
    allowIp: flags.allowIp,
    denyIp: flags.denyIp,
    rateLimit: flags.rateLimit,
    maxVisitors: flags.maxVisitors !== undefined ? parseCount(flags.maxVisitors, '--max-visitors') : undefined,
    inspect: parseInspect(flags.inspect, true),
    ...(embeddedPort && flags.port !== undefined ? { port: flags.port === '0' ? 0 : parsePort(flags.port, '--port') } : {}),
    engine: parseEngine(flags.engine),
    logger: logger(flags.logLevel),
  };
}

export async function runHttp(targetArg: string, flags: HttpFlags, kind: ShareKind = 'http', out = outputFor(Boolean(flags.json))): Promise<void> {
  out.progress?.(`Connecting to ${flags.server || 'the embedded server'}…`);
  if (flags.server) tierForNetwork();
  const { share } = await loadShare();
  const shared = await share(shareOptions(targetArg, flags, kind));
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
async function report(shared: Share, out: Output, target: string, originStartsLater = false): Promise<() => void> {
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
    out.emit({
      event,
      id: s.id,
      visitor: s.visitor,
      path: s.path,
      via: s.via,
      ...(s.rtt !== undefined ? { rtt: round(s.rtt) } : {}),
      ...(s.standby?.length ? { standby: s.standby } : {}),
    });
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
  shared.on('resumed', (r) =>
    out.emit({
      event: 'ready',
      name: r.name,
      url: r.url,
      origin: shared.origin,
      server: shared.server,
      resumed: true,
      ...(shared.via !== 'server' ? { via: shared.via, link: shared.link } : {}),
    }),
  );
  out.emit({
    event: 'ready',
    name: shared.name,
    url: shared.url,
    link: shared.link,
    ...(shared.lan ? { lan: shared.lan } : {}),
    ...(shared.announced ? { announced: shared.announced } : {}),
    ...(shared.lanUrl ? { lanUrl: shared.lanUrl } : {}),
    origin: shared.origin,
    server: shared.server,
    ...(shared.inspect ? { inspect: shared.inspect } : {}),
    ...(shared.kind !== 'http' ? { kind: shared.kind } : {}),
    ...(shared.ca ? { ca: shared.ca } : {}),
    ...(shared.via !== 'server' ? { via: shared.via } : {}),
  });
  if (originStartsLater) {
    // `beam run`: the command that serves it starts now; say when it answers.
    watchOrigin();
  } else if (shared.kind !== 'udp' && !(await isListening(origin.port, origin.host))) {
    out.emit({ event: 'origin-unreachable', origin: shared.origin, code: 'ECONNREFUSED' });
    watchOrigin();
  }
  return () => {
    stopped = true;
    clearInterval(watcher);
    watcher = undefined;
  };
}

/**
 * `beam run [options] -- <command...>`: registers the share first, then
 * starts the command with BEAM_URL and BEAM_HOST (and PORT, unless set) in
 * its environment, sharing the port it listens on: --port, else the one its
 * package.json's framework uses. Ctrl+C (or SIGTERM) goes to the command;
 * when it exits, the share closes and Beam exits with its code. With --json,
 * the command's stdout goes to stderr, so stdout carries only events.
 */
export async function runRun(command: string[], flags: HttpFlags): Promise<void> {
  const json = Boolean(flags.json);
  // Plain lines, not the terminal UI: the command writes to the same terminal.
  const out = createOutput(json);
  if (command.length === 0) throw new BeamError('BEAM_ERR_BAD_OPTION', 'no command: `beam run [options] -- <command...>`, e.g. `beam run -- npm run dev`');
  let port: number | undefined = flags.port !== undefined ? parsePort(flags.port, '--port') : undefined;
  if (port === undefined) {
    const detected = await detectFromPackageJson(process.cwd());
    if (!detected)
      throw new BeamError('BEAM_ERR_BAD_OPTION', 'which port does the command listen on? Pass --port <port> (package.json names no dev server Beam knows)');
    port = detected.port;
    out.emit({ event: 'detected', framework: detected.framework, port, from: 'package.json' });
  }
  const { share } = await loadShare();
  if (flags.server) tierForNetwork();
  const shared = await share(shareOptions(String(port), flags, 'http', false));
  let child: ChildProcess | undefined;
  let exitCode: number | undefined;
  const finish = async (code: number): Promise<never> => {
    stopWatching();
    await shared.close();
    out.emit({ event: 'closed' });
    process.exit(code);
  };
  // A signal before the command runs closes the share; after, it goes to the command, whose exit ends Beam.
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (!child || exitCode !== undefined) {
      void finish(130);
      return;
    }
    // A second Ctrl+C means now.
    child.kill(signals > 1 ? 'SIGKILL' : signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let stopWatching = (): void => {};
  stopWatching = await report(shared, out, String(port), true);
  const url = new URL(shared.url);
  const env: NodeJS.ProcessEnv = { ...process.env, BEAM_URL: shared.url, BEAM_HOST: url.host };
  if (env['PORT'] === undefined || env['PORT'] === '') env['PORT'] = String(port);
  const [file, ...args] = command as [string, ...string[]];
  child = spawn(file, args, { stdio: json ? ['inherit', 2, 'inherit'] : 'inherit', env });
  child.once('spawn', () => out.emit({ event: 'started', command: command.join(' '), pid: child?.pid }));
  child.once('error', (err: NodeJS.ErrnoException) => {
    if (exitCode !== undefined) return;
    exitCode = err.code === 'ENOENT' ? 127 : 126;
    out.emit({ event: 'error', code: 'BEAM_ERR_BAD_OPTION', message: `${file}: ${err.code === 'ENOENT' ? 'command not found' : (err.code ?? err.message)}` });
    void finish(exitCode);
  });
  child.once('exit', (code, signal) => {
    if (exitCode !== undefined) return;
    // A command killed by a signal exits 128 + its number, as a shell reports it.
    exitCode = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
    out.emit({ event: 'exited', code: exitCode, ...(signal ? { signal } : {}) });
    void finish(exitCode);
  });
}

/** `beam` with no port: the dev server package.json declares, or the one listening. */
export async function runDetected(flags: HttpFlags): Promise<void> {
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
export async function runStart(flags: StartFlags): Promise<void> {
  const json = Boolean(flags.json);
  // The YAML parser loads for beam start alone.
  const config = await (await import('./config.js')).loadConfig(flags.config);
  const log = logger(flags.logLevel);
  const engineName = parseEngine(flags.engine);
  const serverFlag = flags.server || config.server;
  if (serverFlag) tierForNetwork();
  const inspect = parseInspect(flags.inspect, config.inspect);
  if (config.lan && serverFlag)
    throw new BeamError(
      'BEAM_ERR_CONFIG',
      `${flags.config}: lan: true announces the embedded server on your network; with a server, visitors find the shares through it`,
    );
  const p2p = config.via === 'libp2p' ? await loadLibp2p() : undefined;
  if (p2p && (serverFlag || config.lan))
    throw new BeamError('BEAM_ERR_CONFIG', `${flags.config}: via: libp2p needs no Beam server, and announces nothing on the LAN: leave server and lan out`);
  if (!p2p && (config.bootstrap || config.stun)) throw new BeamError('BEAM_ERR_CONFIG', `${flags.config}: bootstrap and stun go with via: libp2p`);
  // Through libp2p: one node (one key, one relay reservation) serves every share, each on a protocol of its own.
  const backend = p2p
    ? new p2p.Libp2pBackend({
        bootstrap: config.bootstrap ? p2p.parseBootstrap(config.bootstrap) : undefined,
        stun: config.stun ? p2p.parseStun(config.stun) : undefined,
        logger: log,
      })
    : undefined;
  // Several shares, one server: the embedded one serves them all (no default share: each Host names one).
  const { announceOnLan, share, startEmbedded } = await loadShare();
  const embedded = serverFlag || backend ? undefined : await startEmbedded({ engine: await loadEngine(engineName), logger: log }, () => undefined);
  const server = serverFlag ? parseServerUrl(serverFlag) : embedded ? `http://127.0.0.1:${embedded.port}` : undefined;
  const started: Share[] = [];
  const watchers: Array<() => void> = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of watchers) stop();
    for (const s of started.reverse()) await s.close();
    await backend?.close();
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
      s = await share({
        ...c.options,
        ...(backend ? { via: 'libp2p' as const, backend } : { server, token: flags.token ?? config.token }),
        engine: engineName,
        logger: log,
        inspect: port,
      });
    } catch (err) {
      await stopAll();
      if (err instanceof BeamError) throw new BeamError(err.code, `share "${c.label}": ${err.detail ?? err.message}`);
      throw err;
    }
    started.push(s);
    if (config.lan && embedded) await announceOnLan(s, embedded.port, 'http', log);
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

export async function runServe(flags: ServeFlags): Promise<void> {
  const out = createOutput(Boolean(flags.json));
  tierForNetwork();
  const port = flags.port === '0' ? 0 : parsePort(flags.port, '--port');
  const log = logger(flags.logLevel);
  if (flags.publicUrl) refuseAddressHost(new URL(parseServerUrl(flags.publicUrl)).hostname, '--public-url');
  const domain = flags.domain.toLowerCase();
  if (!/^[a-z0-9.-]+$/.test(domain)) throw new BeamError('BEAM_ERR_BAD_OPTION', `--domain "${flags.domain}" is not a domain name`);
  refuseAddressHost(domain, '--domain');
  // --stun <url...> adds servers; --no-stun (stun false) turns the server's own STUN off.
  const ice = validateIceConfig({ stun: Array.isArray(flags.stun) ? flags.stun : [], turn: flags.turn ?? [], turnSecret: flags.turnSecret });
  const stunPort = flags.stunPort === undefined ? undefined : flags.stunPort === '0' ? 0 : parsePort(flags.stunPort, '--stun-port');
  if (flags.stun === false && stunPort !== undefined)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--stun-port and --no-stun: the server answers STUN, or it does not');
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
  const relayCap = {
    ...(flags.relayMaxMib !== undefined ? { bytes: parseCount(flags.relayMaxMib, '--relay-max-mib') * 1024 * 1024 } : {}),
    ...(flags.relayMaxSeconds !== undefined ? { ms: parseCount(flags.relayMaxSeconds, '--relay-max-seconds') * 1000 } : {}),
  };
  if ((relayCap.ms ?? 0) > MAX_RELAY_CAP_SECONDS * 1000)
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--relay-max-seconds must be at most ${MAX_RELAY_CAP_SECONDS} (23 days); leave it out for no cap`);
  const { startBeamServer } = await import('../gateway/server.js');
  const server = await startBeamServer(
    { engine, logger: log },
    {
      port,
      host: flags.host,
      relayCap,
      gatewayRelay: parseRelayMode(flags.gatewayRelay, '--gateway-relay'),
      ...(flags.warmLinks !== undefined ? { warmLinks: flags.warmLinks === '0' ? 0 : parseCount(flags.warmLinks, '--warm-links') } : {}),
      domain,
      publicUrl: flags.publicUrl,
      ...(maxHttp !== undefined ? { maxConnectionsPerIp: maxHttp } : {}),
      ice,
      compress: flags.compress,
      browserP2p: flags.browserP2p,
      ...(flags.browserFirstLoad !== undefined ? { browserFirstLoad: parseBrowserFirstLoad(flags.browserFirstLoad) } : {}),
      ...(tls ? { tls } : {}),
      tokens,
      limits,
      trustProxy: flags.trustProxy ?? false,
      ...(flags.redis ? { redis: parseRedisUrl(flags.redis) } : {}),
      ...(flags.nodeUrl ? { nodeUrl: parseServerUrl(flags.nodeUrl, '--node-url') } : {}),
      stun: flags.stun === false ? false : stunPort !== undefined ? { port: stunPort } : {},
    },
  );
  // Caught before ready is out: a signal may come the instant it is.
  onStop(async () => {
    const inFlight = server.gateway.requestsInFlight;
    // drain() stops accepting before it returns its promise: announce only then.
    const drained = server.drain();
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'draining', requests: inFlight })}\n`);
    else out.line(`Draining ${inFlight} request(s) in flight...`);
    await drained;
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'closed' })}\n`);
  });
  const url = flags.publicUrl ?? `${tls ? 'https' : 'http'}://${domain}:${server.port}`;
  if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'ready', url, port: server.port, domain })}\n`);
  else out.line(`Beam server listening on ${flags.host}:${server.port}; shares are ${server.shareUrl('share-name').replace('share-name.', '<name>.')}`);
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

export async function runConnect(linkArg: string, flags: ConnectFlags): Promise<void> {
  const view = createConnectView(Boolean(flags.json));
  tierForNetwork();
  const port = flags.port === '0' ? 0 : parsePort(flags.port, '--port');
  const relay = parseRelayMode(flags.relay);
  const server = flags.server ? parseServerUrl(flags.server) : undefined;
  const log = logger(flags.logLevel);
  const engine = await loadEngine(parseEngine(flags.engine));
  // Ctrl+C from here on stops cleanly: it may come the instant the ready lines are out, so it is caught before.
  let connected: Awaited<ReturnType<typeof import('../app/connect.js')['connect']>> | undefined;
  let rtt: NodeJS.Timeout | undefined;
  onStop(async () => {
    clearInterval(rtt);
    await connected?.close();
    view.closed();
  });
  // beam connect's module (and libp2p, which parses its link) loads for beam connect alone.
  const { connect } = await import('../app/connect.js');
  connected = await connect(
    { engine, logger: log },
    {
      link: linkArg,
      port,
      bind: flags.bind,
      relay,
      server,
      allowHosts: (flags.allowHost ?? []).map((h) => parseAllowedHost(h)),
      ...(flags.stun !== undefined ? { stun: lines(flags.stun) ?? [] } : {}),
    },
  );
  // ready first, then the path it is on, then each change (the --json contract).
  view.ready({
    share: connected.share,
    url: connected.url,
    origin: connected.origin,
    server: connected.server,
    verified: connected.verified,
    lan: connected.lan,
    peer: connected.peer,
    via: connected.via,
    path: connected.path,
  });
  if (connected.path) view.path(connected.path, true);
  connected.on('path', (info) => view.path(info, false));
  const live = connected;
  rtt = setInterval(() => view.rtt(live.rtt), RTT_REFRESH_MS);
  rtt.unref();
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

export async function runDoctor(flags: {
  server?: string;
  json?: boolean;
  via?: string;
  bootstrap?: string[] | string;
  stun?: string[] | string;
}): Promise<void> {
  const { describeLibp2pReport, describeReport, doctor, doctorEmbedded, doctorLibp2p } = await import('./doctor.js');
  const via = parseBackendName(flags.via ?? 'server');
  if (via === 'libp2p') {
    if (flags.server) throw new BeamError('BEAM_ERR_BAD_OPTION', '--server with --via libp2p: libp2p needs no Beam server; leave one of them out');
    const { parseBootstrap, parseStun } = await loadLibp2p();
    const bootstrap = lines(flags.bootstrap);
    const stun = lines(flags.stun);
    const report = await doctorLibp2p({
      bootstrap: bootstrap?.length ? parseBootstrap(bootstrap) : undefined,
      stun: stun?.length ? parseStun(stun) : undefined,
      logger: logger('error'),
    });
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'doctor', ...report })}\n`);
    else process.stdout.write(`${describeLibp2pReport(report)}\n`);
    return;
  }
  if (flags.bootstrap !== undefined || flags.stun !== undefined) throw new BeamError('BEAM_ERR_BAD_OPTION', '--bootstrap and --stun go with --via libp2p');
  const report = flags.server
    ? await doctor(parseServerUrl(flags.server))
    : // No server named: what the embedded default would give, on one started here for the check.
      await doctorEmbedded(async () => {
        const { startBeamServer } = await import('../gateway/server.js');
        const server = await startBeamServer(
          { engine: await loadEngine('node-datachannel'), logger: logger('error') },
          { port: 0, host: '0.0.0.0', domain: 'localhost', metrics: false, browserP2p: false },
        );
        return { url: server.localUrl, port: server.port, close: () => server.close() };
      }, lanAddress());
  if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'doctor', ...report })}\n`);
  else process.stdout.write(`${describeReport(report)}\n`);
}
