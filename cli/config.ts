/**
 * `beam.yml`: several shares, run together by `beam start`.
 *
 * ```yaml
 * server: https://beam.example.com   # optional: default, one embedded server for all
 * token: 8f1c0d3e9a2b4c5d6e7f8091a2b3 # optional: the agent token, for a server with --token-file
 * inspect: true                      # optional: true (4040, else the next free port), a port, or false
 * lan: true                          # optional: announce every share on this network by mDNS (embedded server only)
 * shares:
 *   web:                             # a label, for the output
 *     http: 3000                     # exactly one of http / tcp / udp: a port or host:port
 *     name: my-app
 *     auth: alice:s3cret
 *   db:
 *     tcp: 5432
 *     private: true
 *   dns:
 *     udp: 127.0.0.1:5353
 * ```
 *
 * Each share takes the flags of `beam http|tcp|udp` by their long names:
 * name, private, pool, auth, allow-ip, deny-ip, rate-limit, max-visitors, relay,
 * host-header, origin-timeout, app-protocol, origin-ca, origin-insecure, and
 * the header rules request-header-add, request-header-remove,
 * response-header-add and response-header-remove (lists), and `policy:`
 * (peer-agent/policy.ts), rules in order. Unknown keys are errors, so a typo never passes silently.
 */
import { readFile } from 'node:fs/promises';
import * as v from 'valibot';
import { parseDocument } from 'yaml';
import { parseDuration, parseTarget } from '../app/options.js';
import type { ShareOptions } from '../app/share.js';
import { compilePolicy } from '../peer-agent/policy.js';
import { MAX_CONFIG_BYTES, MAX_CONFIG_SHARES, MAX_POLICY_RULES } from '../shared/constants.js';
import { describeIssue } from '../shared/decode.js';
import { BeamError } from '../shared/errors.js';
import { RELAY_MODES, type ShareKind } from '../shared/signaling.js';

const target = v.pipe(
  v.union([v.pipe(v.number(), v.integer()), v.string()]),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    try {
      parseTarget(String(dataset.value));
      return String(dataset.value);
    } catch (err) {
      addIssue({ message: (err as BeamError).detail ?? 'not a port or host:port' });
      return NEVER;
    }
  }),
);
const list = v.pipe(
  v.union([v.string(), v.array(v.string())]),
  v.transform((x) => (Array.isArray(x) ? x : x.split(/[\s,]+/).filter(Boolean))),
);

const headerList = v.optional(v.array(v.string()));
/** A policy rule (peer-agent/policy.ts); compilePolicy then checks what a schema can't (one action a rule, the values). */
const PolicyRuleSchema = v.strictObject({
  name: v.optional(v.string()),
  path: v.optional(v.string()),
  methods: v.optional(v.array(v.string())),
  'allow-ip': v.optional(list),
  'deny-ip': v.optional(list),
  auth: v.optional(v.string()),
  'rate-limit': v.optional(v.string()),
  deny: v.optional(v.union([v.literal(true), v.pipe(v.number(), v.integer())])),
  redirect: v.optional(v.union([v.string(), v.strictObject({ to: v.string(), status: v.optional(v.pipe(v.number(), v.integer())) })])),
  'request-header-add': headerList,
  'request-header-remove': headerList,
  'response-header-add': headerList,
  'response-header-remove': headerList,
  'verify-webhook': v.optional(v.strictObject({ provider: v.string(), secret: v.string(), header: v.optional(v.string()) })),
});

const ShareSchema = v.pipe(
  v.strictObject({
    http: v.optional(target),
    tcp: v.optional(target),
    udp: v.optional(target),
    name: v.optional(v.string()),
    private: v.optional(v.boolean()),
    pool: v.optional(v.boolean()),
    auth: v.optional(v.string()),
    'allow-ip': v.optional(list),
    'deny-ip': v.optional(list),
    'rate-limit': v.optional(v.string()),
    'max-visitors': v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    relay: v.optional(v.picklist(RELAY_MODES)),
    'host-header': v.optional(v.picklist(['rewrite', 'preserve'])),
    'origin-timeout': v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    'app-protocol': v.optional(v.picklist(['http1', 'http2'])),
    'origin-ca': v.optional(v.string()),
    'origin-insecure': v.optional(v.boolean()),
    'request-header-add': v.optional(v.array(v.string())),
    'request-header-remove': v.optional(v.array(v.string())),
    'response-header-add': v.optional(v.array(v.string())),
    'response-header-remove': v.optional(v.array(v.string())),
    'verify-webhook': v.optional(v.picklist(['github', 'stripe', 'slack', 'standard', 'hmac'])),
    'verify-webhook-secret': v.optional(v.string()),
    'verify-webhook-header': v.optional(v.string()),
    policy: v.optional(v.pipe(v.array(PolicyRuleSchema), v.maxLength(MAX_POLICY_RULES))),
    oidc: v.optional(v.string()),
    oauth: v.optional(v.string()),
    'oauth-url': v.optional(v.string()),
    'oidc-client-id': v.optional(v.string()),
    'oidc-client-secret': v.optional(v.string()),
    'oidc-scopes': v.optional(v.string()),
    'oidc-session': v.optional(v.pipe(v.string(), v.regex(/^\d{1,6}[smhd]$/, 'a duration: 30m, 12h, 7d (or 90s)'))),
    'oidc-allow-email': v.optional(list),
    'oidc-allow-domain': v.optional(list),
  }),
  v.check((s) => [s.http, s.tcp, s.udp].filter((t) => t !== undefined).length === 1, 'each share needs exactly one of http, tcp or udp (a port or host:port)'),
);

const ConfigSchema = v.strictObject({
  server: v.optional(v.string()),
  /** The agent token for a server with --token-file. */
  token: v.optional(v.string()),
  inspect: v.optional(v.union([v.boolean(), v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535))])),
  lan: v.optional(v.boolean()),
  via: v.optional(v.picklist(['server', 'libp2p'], 'via is server (a Beam server: the default) or libp2p (no Beam server)')),
  bootstrap: v.optional(list),
  stun: v.optional(list),
  shares: v.pipe(
    v.record(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,32}$/, 'a share label is 1-32 letters, digits, - or _')), ShareSchema),
    v.check((r) => Object.keys(r).length > 0, 'declare at least one share'),
    v.check((r) => Object.keys(r).length <= MAX_CONFIG_SHARES, `at most ${MAX_CONFIG_SHARES} shares`),
  ),
});

export interface ConfiguredShare {
  /** The key under `shares:`. */
  label: string;
  options: ShareOptions;
}

export interface Config {
  server: string | undefined;
  token: string | undefined;
  inspect: boolean | number;
  /** Announce every share on the LAN by mDNS (`beam --lan`); the embedded server only. */
  lan: boolean;
  /** The network every share goes through (`--via`): one libp2p node serves them all. */
  via: 'server' | 'libp2p';
  /** With via libp2p: the peers to join through, and STUN servers for the hole punch. */
  bootstrap: string[] | undefined;
  stun: string[] | undefined;
  shares: ConfiguredShare[];
}

/** Parses and validates a config file's text; `file` names it in errors. */
export function parseConfig(text: string, file: string): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const at = e.linePos?.[0] ? `:${e.linePos[0].line}` : '';
    throw new BeamError('BEAM_ERR_CONFIG', `${file}${at}: ${e.message.split('\n')[0]}`);
  }
  let value: unknown;
  try {
    // maxAliasCount bounds alias expansion ("billion laughs").
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new BeamError('BEAM_ERR_CONFIG', `${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  const parsed = v.safeParse(ConfigSchema, value);
  if (!parsed.success) {
    const { where, message } = describeIssue(parsed.issues[0]);
    throw new BeamError('BEAM_ERR_CONFIG', `${file}: ${where ?? '(top level)'}: ${message}`);
  }
  const c = parsed.output;
  // What the schema can't say of a policy (one action a rule, its values), said now, before anything starts.
  for (const [label, s] of Object.entries(c.shares)) {
    if (!s.policy) continue;
    try {
      compilePolicy(s.policy);
    } catch (err) {
      throw new BeamError('BEAM_ERR_CONFIG', `${file}: shares.${label}.${(err as BeamError).detail ?? (err as Error).message}`);
    }
  }
  return {
    server: c.server,
    token: c.token,
    inspect: c.inspect ?? true,
    lan: c.lan ?? false,
    via: c.via ?? 'server',
    bootstrap: c.bootstrap,
    stun: c.stun,
    shares: Object.entries(c.shares).map(([label, s]) => {
      const kind: ShareKind = s.http !== undefined ? 'http' : s.tcp !== undefined ? 'tcp' : 'udp';
      return {
        label,
        options: {
          target: (s.http ?? s.tcp ?? s.udp) as string,
          kind,
          name: s.name,
          private: s.private,
          pool: s.pool,
          auth: s.auth,
          allowIp: s['allow-ip'],
          denyIp: s['deny-ip'],
          rateLimit: s['rate-limit'],
          maxVisitors: s['max-visitors'],
          relay: s.relay,
          hostHeader: s['host-header'],
          originTimeoutMs: s['origin-timeout'],
          appProtocol: s['app-protocol'],
          originCa: s['origin-ca'],
          originInsecure: s['origin-insecure'],
          requestHeaderAdd: s['request-header-add'],
          requestHeaderRemove: s['request-header-remove'],
          responseHeaderAdd: s['response-header-add'],
          responseHeaderRemove: s['response-header-remove'],
          verifyWebhook: s['verify-webhook'],
          verifyWebhookSecret: s['verify-webhook-secret'],
          verifyWebhookHeader: s['verify-webhook-header'],
          policy: s.policy,
          oidc: s.oidc,
          oauth: s.oauth,
          oauthUrl: s['oauth-url'],
          oidcClientId: s['oidc-client-id'],
          oidcClientSecret: s['oidc-client-secret'],
          oidcScopes: s['oidc-scopes'],
          oidcSessionMs: s['oidc-session'] !== undefined ? parseDuration(s['oidc-session'], 'oidc-session') : undefined,
          oidcAllowEmail: s['oidc-allow-email'],
          oidcAllowDomain: s['oidc-allow-domain'],
        },
      };
    }),
  };
}

export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.byteLength > MAX_CONFIG_BYTES) throw new BeamError('BEAM_ERR_CONFIG', `${file}: larger than ${MAX_CONFIG_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (err) {
    if (err instanceof BeamError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new BeamError(
      'BEAM_ERR_CONFIG',
      code === 'ENOENT'
        ? `${file} does not exist: write one (see \`beam start --help\`) or pass --config <file>`
        : `${file}: ${code ?? (err as Error).message}`,
    );
  }
  return parseConfig(text, file);
}
