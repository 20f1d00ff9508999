/**
 * A share's policy (`policy:` in beam.yml, `policy` in the API): rules the
 * agent runs in order, on every path, after the share's own flags. A small,
 * honest subset of ngrok's traffic policy: each rule may match a path prefix
 * and methods, and does one thing.
 *
 * ```yaml
 * policy:
 *   - path: /old                       # "/old" and "/old/...", not "/older"
 *     redirect: /new                   # 302; or { to: /new, status: 301 }
 *   - path: /admin
 *     allow-ip: [10.0.0.0/8]           # or deny-ip
 *   - path: /admin
 *     auth: alice:s3cret               # basic auth for these paths only
 *   - methods: [POST, PUT, DELETE]
 *     rate-limit: 30/min               # its own budget, per visitor
 *   - path: /internal
 *     deny: 404                        # 403 when `deny: true`
 *   - request-header-add: ["X-Env: staging"]
 *   - response-header-remove: [Server]
 *   - path: /webhooks/github
 *     verify-webhook: { provider: github, secret: ... }   # these paths only
 * ```
 *
 * `deny` and `redirect` answer at once, and no later rule runs; `allow-ip`,
 * `deny-ip`, `auth` and `rate-limit` refuse as their flags do; header rules
 * add up over the rules that match; `verify-webhook` has the agent check the
 * body's signature before the origin sees it (after admission: it needs the
 * body). Evaluation is pure but for the rate
 * limits' counts (peer-agent/admission.ts carries out the verdict).
 */
import { MAX_POLICY_RULES } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { type BasicCredentials, IpRules, parseBasicCredentials, parseRateLimit, type RateLimit } from './access.js';
import { type HeaderRules, parseHeaderRules } from './header-rules.js';
import { parseWebhookVerifier, type WebhookVerifier } from './webhooks.js';

/** A rule as beam.yml and the API write it. */
export interface PolicyRuleOptions {
  /** A label for errors and logs. */
  name?: string | undefined;
  /** A path prefix the rule applies to, segment-wise; every path when absent. */
  path?: string | undefined;
  /** Methods the rule applies to; every method when absent. */
  methods?: string[] | undefined;
  'allow-ip'?: string[] | undefined;
  'deny-ip'?: string[] | undefined;
  auth?: string | undefined;
  'rate-limit'?: string | undefined;
  /** A status (400-599), or true for 403. */
  deny?: number | true | undefined;
  /** A path or URL, or { to, status } with a 3xx status (default 302). */
  redirect?: string | { to: string; status?: number | undefined } | undefined;
  'request-header-add'?: string[] | undefined;
  'request-header-remove'?: string[] | undefined;
  'response-header-add'?: string[] | undefined;
  'response-header-remove'?: string[] | undefined;
  /** The request must carry a valid webhook signature (as --verify-webhook, for this rule's paths only). */
  'verify-webhook'?: { provider: string; secret: string; header?: string | undefined } | undefined;
}

export type PolicyAction =
  | { kind: 'ip'; rules: IpRules }
  | { kind: 'auth'; credentials: BasicCredentials }
  | { kind: 'rate'; limit: RateLimit }
  | { kind: 'deny'; status: number }
  | { kind: 'redirect'; to: string; status: number }
  | { kind: 'headers'; rules: HeaderRules }
  | { kind: 'webhook'; verifier: WebhookVerifier };

export interface PolicyRule {
  label: string;
  path: string | undefined;
  methods: ReadonlySet<string> | undefined;
  action: PolicyAction;
}

const ACTIONS = [
  'allow-ip',
  'deny-ip',
  'auth',
  'rate-limit',
  'deny',
  'redirect',
  'request-header-add',
  'request-header-remove',
  'response-header-add',
  'response-header-remove',
  'verify-webhook',
] as const;
const HEADER_ACTIONS = new Set(['request-header-add', 'request-header-remove', 'response-header-add', 'response-header-remove']);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Compiles the rules, or BEAM_ERR_BAD_OPTION naming the rule (`policy[2] "admin"`) and what is wrong with it. */
export function compilePolicy(rules: readonly PolicyRuleOptions[]): PolicyRule[] {
  if (rules.length > MAX_POLICY_RULES) throw new BeamError('BEAM_ERR_BAD_OPTION', `policy: ${rules.length} rules, more than ${MAX_POLICY_RULES}`);
  return rules.map((rule, i) => {
    const label = `policy[${i}]${rule.name ? ` "${rule.name}"` : ''}`;
    const fail = (what: string): never => {
      throw new BeamError('BEAM_ERR_BAD_OPTION', `${label}: ${what}`);
    };
    const given = ACTIONS.filter((a) => rule[a] !== undefined);
    const headerOnly = given.length > 0 && given.every((a) => HEADER_ACTIONS.has(a));
    if (given.length === 0) fail(`no action: give one of ${ACTIONS.join(', ')}`);
    if (given.length > 1 && !headerOnly) fail(`one action a rule (${given.join(' and ')}): split them into rules, in the order they should run`);
    if (rule.path !== undefined && !/^\/[^?#\s]*$/.test(rule.path)) fail(`path "${rule.path}" must start with / and hold no query`);
    if (rule.methods !== undefined && (rule.methods.length === 0 || rule.methods.some((m) => !/^[A-Z][A-Z0-9_-]{0,31}$/.test(m))))
      fail('methods are upper-case HTTP methods, e.g. [GET, POST]');
    let action: PolicyAction;
    try {
      action = compileAction(rule, given[0] as (typeof ACTIONS)[number], headerOnly);
    } catch (err) {
      return fail(err instanceof BeamError ? (err.detail ?? err.message) : (err as Error).message);
    }
    return {
      label,
      path: rule.path === '/' ? undefined : rule.path?.replace(/\/+$/, ''),
      methods: rule.methods ? new Set(rule.methods) : undefined,
      action,
    };
  });
}

function compileAction(rule: PolicyRuleOptions, first: (typeof ACTIONS)[number], headerOnly: boolean): PolicyAction {
  if (headerOnly) {
    const rules = parseHeaderRules({
      requestHeaderAdd: rule['request-header-add'],
      requestHeaderRemove: rule['request-header-remove'],
      responseHeaderAdd: rule['response-header-add'],
      responseHeaderRemove: rule['response-header-remove'],
    });
    if (!rules) throw new BeamError('BEAM_ERR_BAD_OPTION', 'the header rules are empty');
    return { kind: 'headers', rules };
  }
  switch (first) {
    case 'allow-ip':
    case 'deny-ip':
      return { kind: 'ip', rules: new IpRules(rule['allow-ip'] ?? [], rule['deny-ip'] ?? []) };
    case 'auth':
      return { kind: 'auth', credentials: parseBasicCredentials(rule.auth as string) };
    case 'rate-limit':
      return { kind: 'rate', limit: parseRateLimit(rule['rate-limit'] as string) };
    case 'deny': {
      const status = rule.deny === true ? 403 : Number(rule.deny);
      if (!Number.isInteger(status) || status < 400 || status > 599)
        throw new BeamError('BEAM_ERR_BAD_OPTION', `deny: ${String(rule.deny)} is not a status from 400 to 599`);
      return { kind: 'deny', status };
    }
    case 'verify-webhook': {
      const w = rule['verify-webhook'] as NonNullable<PolicyRuleOptions['verify-webhook']>;
      return { kind: 'webhook', verifier: parseWebhookVerifier(w.provider, w.secret, w.header) };
    }
    case 'redirect': {
      const r = rule.redirect as NonNullable<PolicyRuleOptions['redirect']>;
      const to = typeof r === 'string' ? r : r.to;
      const status = typeof r === 'string' ? 302 : (r.status ?? 302);
      if (!REDIRECT_STATUSES.has(status)) throw new BeamError('BEAM_ERR_BAD_OPTION', `redirect status ${status} is not one of 301, 302, 303, 307, 308`);
      if (!/^(\/(?![/\\])|https?:\/\/)[^\s\r\n]*$/.test(to)) throw new BeamError('BEAM_ERR_BAD_OPTION', `redirect to "${to}": a path (/new) or an http(s) URL`);
      return { kind: 'redirect', to, status };
    }
    default:
      throw new BeamError('BEAM_ERR_BAD_OPTION', `${first} goes alone in its rule`);
  }
}

/**
 * A request target's path as an origin would read it, for matching: percent-
 * encoded unreserved characters decoded (`/%61dmin` is `/admin`, RFC 3986
 * section 6.2.2.2), dot segments resolved (`/x/../admin`), and runs of
 * slashes as one (`//admin`). Otherwise a rule on /admin could be walked
 * around by spelling the path another way the origin reads the same.
 */
export function normalizedPath(target: string): string {
  const raw = (target.split(/[?#]/)[0] ?? '/').replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) => {
    const c = String.fromCharCode(Number.parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : m.toUpperCase();
  });
  let path: string;
  try {
    path = new URL(raw.replace(/\/{2,}/g, '/'), 'http://x').pathname;
  } catch {
    path = raw;
  }
  return path.replace(/\/{2,}/g, '/');
}

/** Whether a rule applies to a request: its path prefix (segment-wise) and its methods. */
export function ruleMatches(rule: PolicyRule, method: string, target: string): boolean {
  if (rule.methods && !rule.methods.has(method)) return false;
  if (rule.path === undefined) return true;
  const path = normalizedPath(target);
  return path === rule.path || path.startsWith(`${rule.path}/`);
}
