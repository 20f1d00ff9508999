/**
 * The `beam` command line: its commands and flags. What a command does is in
 * cli/commands.ts, imported when the command runs, so help and version
 * answer at once.
 */
import { Command, Option } from 'commander';
import { BEAM_VERSION } from '../app/version.js';
import {
  DEFAULT_EMBEDDED_PORT,
  DEFAULT_INSPECT_PORT,
  DEFAULT_ORIGIN_TIMEOUT_MS,
  GATEWAY_MAX_CONNECTIONS_PER_IP,
  GATEWAY_WARM_LINKS,
  MAX_CONNECTIONS_PER_IP,
  REGISTRATIONS_PER_IP_PER_MINUTE,
  SESSIONS_PER_IP_PER_MINUTE,
} from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { ConnectFlags, HttpFlags, ServeFlags, StartFlags } from './commands.js';
import { COMMON_DEV_PORTS } from './detect.js';
import { applyEnv } from './env.js';

const commands = (): Promise<typeof import('./commands.js')> => import('./commands.js');

/** Prints the error as the output in use would (a JSON event, or a line on stderr) and exits 1. */
function fail(err: unknown, json: boolean): never {
  const code = err instanceof BeamError ? err.code : 'BEAM_ERR_BAD_REQUEST';
  const message = err instanceof BeamError ? err.message : ((err as Error).message ?? String(err));
  if (json) process.stdout.write(`${JSON.stringify({ event: 'error', code, message })}\n`);
  else process.stderr.write(`Error ${code}: ${message}\n`);
  process.exit(1);
}
/** A repeatable flag: each use adds one value. */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

function httpCommand(cmd: Command, embeddedPort = true): Command {
  cmd.option('--server <url>', 'Beam server to register with (env BEAM_SERVER); default: an embedded server in this process');
  if (embeddedPort) cmd.option('--port <port>', `port of the embedded server (default ${DEFAULT_EMBEDDED_PORT}, else the next free one; 0: any free one)`);
  return cmd
    .option('--name <name>', 'share name to ask for (default: a random adjective-noun-NNN)')
    .option('--token <token>', 'agent token, for a server started with --token-file')
    .option('--json', 'print newline-delimited JSON events on stdout')
    .addOption(new Option('--log-level <level>', 'pino log level on stderr').default('warn'))
    .addOption(new Option('--engine <engine>', 'WebRTC engine: node-datachannel or werift').default('node-datachannel'))
    .addOption(new Option('--host-header <mode>', "rewrite the Host header to the origin's (rewrite) or keep the visitor's (preserve)").default('rewrite'))
    .option('--origin-timeout <ms>', `how long to wait for the origin's response head (default ${DEFAULT_ORIGIN_TIMEOUT_MS})`)
    .addOption(
      new Option('--app-protocol <protocol>', 'what the origin speaks: http1, or http2 (h2c on http://, h2 on https://; gRPC needs it)').default('http1'),
    )
    .option('--origin-ca <file>', "an https origin: check its certificate against these authorities (PEM) instead of the system's")
    .option('--origin-insecure', "an https origin: don't check its certificate (a self-signed development server)")
    .option('--request-header-add <"Name: value">', 'a header the origin gets ({client_ip} and {path} expand); repeatable', collect, [])
    .option('--request-header-remove <name>', 'a header removed before the origin sees the request; repeatable', collect, [])
    .option('--response-header-add <"Name: value">', 'a header every visitor gets back; repeatable', collect, [])
    .option('--response-header-remove <name>', "a header removed from the origin's responses; repeatable", collect, [])
    .option('--oidc <issuer-url>', 'visitors sign in with this OpenID Connect provider first (the agent runs the flow)')
    .option('--oauth <provider>', 'visitors sign in with a provider Beam knows: google, github')
    .option('--oauth-url <url>', 'with --oauth github: a GitHub Enterprise Server instead of github.com')
    .option('--oidc-client-id <id>', "the client registered with the provider (redirect URI: <share's URL>.beam/oidc/callback)")
    .option('--oidc-client-secret <secret>', "the client's secret (env BEAM_OIDC_CLIENT_SECRET)")
    .option('--oidc-scopes <scopes>', 'scopes to ask for (default "openid email profile")')
    .option('--oidc-session <duration>', 'how long a sign-in lasts: 30m, 12h, 7d (default 12h)')
    .option('--oidc-allow-email <address...>', 'only these verified e-mail addresses get in')
    .option('--oidc-allow-domain <domain...>', 'only verified e-mail addresses in these domains get in')
    .option('--verify-webhook <provider>', 'every request must carry a valid webhook signature: github, stripe, slack, standard, or hmac')
    .option('--verify-webhook-secret <secret>', 'the signing secret the webhook sender shows (env BEAM_VERIFY_WEBHOOK_SECRET)')
    .option('--verify-webhook-header <name>', 'with --verify-webhook hmac: the header that carries the HMAC-SHA256 signature')
    .addOption(new Option('--relay <mode>', 'auto: direct WebRTC, else the relay; never: direct only; always: relay only').default('auto'))
    .option('--private', 'only visitors with the full link (it carries a secret) get in')
    .option('--pool', 'join the pool --name on --server: every agent started so shares the name, and visitors are spread across them')
    .addOption(
      new Option(
        '--via <backend>',
        'the network the share goes through: server (a Beam server, or the embedded one), or libp2p (no Beam server; beam connect only)',
      ).default('server'),
    )
    .option('--bootstrap <multiaddr...>', 'with --via libp2p: the peers to join through, ending /p2p/<id> (default: the public libp2p bootstrap list)')
    .option('--stun <url...>', "with --via libp2p: STUN servers for the hole punch, stun:host:port (default: libp2p's public list)")
    .option('--lan', 'announce the share on this network by mDNS: teammates run `beam connect <name>`, no address, no server (embedded server only)')
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
    .version(BEAM_VERSION, '-V, --version', "print Beam's version")
    // The root's options come before a command's name; `beam run` passes what follows its command through.
    .enablePositionalOptions();
  httpCommand(root).action(async (port: string | undefined, flags: HttpFlags) => {
    await commands()
      .then((c) => (port ? c.runHttp(port, flags) : c.runDetected(flags)))
      .catch((err: unknown) => fail(err, Boolean(flags.json)));
  });
  httpCommand(
    root.command('http').description('share a local HTTP server').argument('<target>', 'port, host:port, or an origin URL (https://localhost:8443)'),
  ).action(async (target: string, flags: HttpFlags) => {
    await commands()
      .then((c) => c.runHttp(target, flags))
      .catch((err: unknown) => fail(err, Boolean(flags.json)));
  });
  httpCommand(
    root
      .command('tcp')
      .description('share a local TCP service (a database, SSH, ...): teammates open it with `beam connect`')
      .argument('<target>', 'port or host:port'),
  ).action(async (target: string, flags: HttpFlags) => {
    await commands()
      .then((c) => c.runHttp(target, flags, 'tcp'))
      .catch((err: unknown) => fail(err, Boolean(flags.json)));
  });
  httpCommand(
    root
      .command('udp')
      .description('share a local UDP service (DNS, a game server, ...): teammates open it with `beam connect`')
      .argument('<target>', 'port or host:port'),
  ).action(async (target: string, flags: HttpFlags) => {
    await commands()
      .then((c) => c.runHttp(target, flags, 'udp'))
      .catch((err: unknown) => fail(err, Boolean(flags.json)));
  });
  httpCommand(
    root
      .command('run')
      .description('share the port a command serves on: register first, then run it with BEAM_URL and BEAM_HOST set')
      .argument('<command...>', 'the command and its arguments, after --: beam run -- npm run dev')
      .option('--port <port>', "the port the command's server listens on (default: the one package.json's framework uses)")
      .passThroughOptions(),
    false,
  ).action(async (command: string[], flags: HttpFlags) => {
    await commands()
      .then((c) => c.runRun(command, flags))
      .catch((err: unknown) => fail(err, Boolean(flags.json)));
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
    .option('--stun <url...>', "more STUN servers handed to peers, e.g. stun:stun.example.com:3478 (the server's own comes first)")
    .option('--stun-port <port>', 'UDP port the server answers STUN on (default: its own port number)')
    .option('--no-stun', 'no STUN from this server (peers behind NATs then need --stun servers for direct paths)')
    .option('--turn <url...>', 'TURN servers handed to peers, e.g. turn:turn.example.com:3478?transport=udp')
    .option('--turn-secret <secret>', "the TURN server's static-auth-secret, for time-limited REST credentials (env BEAM_TURN_SECRET)")
    .option('--no-compress', 'send responses as the origin sent them (default: brotli or gzip for text, when the client accepts it)')
    .option('--tls-cert <file>', 'serve https with this certificate chain (PEM), e.g. a wildcard certificate for *.<domain>')
    .option('--tls-key <file>', 'the private key (PEM) of --tls-cert')
    .option('--no-browser-p2p', 'send browsers through the gateway as curl (default: a browser that opens a share reaches the agent peer to peer)')
    .option(
      '--browser-first-load <where>',
      "a new visitor's first page: frame (default: in Beam's page, which then carries the app peer to peer) or top (the app's own page at once, through the gateway; Beam's page joins once it has loaded)",
    )
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
    .option(
      '--warm-links <n>',
      `links the gateway opens to HTTP shares as they register, so a first visitor waits for no setup (default ${GATEWAY_WARM_LINKS}; 0: at the first visitor)`,
    )
    .option(
      '--relay-max-mib <n>',
      "end a session on the relay once it has carried this many MiB, both ways (default: no cap; the server's own gateway is never capped)",
    )
    .option('--relay-max-seconds <n>', 'end a session on the relay this many seconds after it starts there (default: no cap)')
    .addOption(
      new Option(
        '--gateway-relay <mode>',
        "how the gateway reaches agents: auto: the relay (the agent's own connection to this server), with direct WebRTC standing by for when that connection drops; always: the relay only, no WebRTC; never: WebRTC only (slower; a download in flight outlives the agent's connection). An agent's --relay always or never wins",
      ).default('auto'),
    )
    .option('--node-url <url>', "with --redis: this node's own URL (on the public host or below it), where relayed sessions it sets up meet")
    .action(async (flags: ServeFlags) => {
      await commands()
        .then((c) => c.runServe(flags))
        .catch((err: unknown) => fail(err, Boolean(flags.json)));
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
      await commands()
        .then((c) => c.runStart(flags))
        .catch((err: unknown) => fail(err, Boolean(flags.json)));
    });
  root
    .command('connect')
    .description('open a share as a local port, peer to peer')
    .argument('<link>', "the share's link, as `beam` printed it (with #peer=... to verify the agent), or on this network the name of a `beam --lan` share")
    .addOption(new Option('--port <port>', 'local port (0: any free one)').default('0'))
    .addOption(new Option('--bind <address>', 'local address to listen on').default('127.0.0.1'))
    .addOption(new Option('--relay <mode>', 'auto: direct WebRTC, else the relay; never: direct only; always: relay only').default('auto'))
    .option('--server <url>', 'Beam server to use instead of the one the link names')
    .option('--stun <url...>', "a beam+libp2p:// link: STUN servers for the hole punch, stun:host:port (default: libp2p's public list)")
    .option('--allow-host <name...>', 'an HTTP share answers only Host localhost, 127.0.0.1, [::1] (and the --bind address); also answer these names')
    .option('--json', 'print newline-delimited JSON events on stdout')
    .addOption(new Option('--log-level <level>', 'pino log level on stderr').default('warn'))
    .addOption(new Option('--engine <engine>', 'WebRTC engine: node-datachannel or werift').default('node-datachannel'))
    .action(async (link: string, flags: ConnectFlags) => {
      await commands()
        .then((c) => c.runConnect(link, flags))
        .catch((err: unknown) => fail(err, Boolean(flags.json)));
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
    .option('--server <url>', 'Beam server to check against (env BEAM_SERVER); default: what the embedded default would give')
    .option('--via <backend>', 'server (default), or libp2p: check the bootstrap peers, a relay reservation, UDP and the NAT for the hole punch')
    .option('--bootstrap <multiaddr...>', 'with --via libp2p: the peers to join through (default: the public libp2p bootstrap list)')
    .option('--stun <url...>', "with --via libp2p: STUN servers to check with (default: libp2p's public list)")
    .option('--json', 'print the report as one JSON line')
    .action(async (flags: { server?: string; json?: boolean; via?: string; bootstrap?: string[]; stun?: string[] }) => {
      await commands()
        .then((c) => c.runDoctor(flags))
        .catch((err: unknown) => fail(err, Boolean(flags.json)));
    });
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
