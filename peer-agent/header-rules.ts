/**
 * Header rules (`--request-header-add "Name: value"`,
 * `--request-header-remove <name>`, and the same for responses), applied by
 * the agent on every path after admission: what the origin gets, and what
 * the visitor gets back. Removals run first, then additions, so remove plus
 * add sets a header. A value may say `{client_ip}` (the visitor's address as
 * the agent knows it) and `{path}` (the request's path, without its query).
 *
 * Hop-by-hop and framing headers, Host, and Beam's own (`beam-*`,
 * X-Request-Id) can't be set or removed this way: Beam decides those, and a
 * rule that named them would either break the exchange or hide how it
 * travelled. A rule that names one is refused at start.
 */
import { BeamError } from '../shared/errors.js';
import { HOP_BY_HOP } from '../shared/http-head.js';
import type { HeaderPairs } from './inspect.js';

export interface HeaderRules {
  requestRemove: ReadonlySet<string>;
  requestAdd: ReadonlyArray<readonly [string, string]>;
  responseRemove: ReadonlySet<string>;
  responseAdd: ReadonlyArray<readonly [string, string]>;
}

export interface HeaderRuleOptions {
  requestHeaderAdd?: readonly string[] | undefined;
  requestHeaderRemove?: readonly string[] | undefined;
  responseHeaderAdd?: readonly string[] | undefined;
  responseHeaderRemove?: readonly string[] | undefined;
}

/** Headers no rule may touch: hop-by-hop ones, the body's length, Host, and the request id Beam threads through. */
const RESERVED: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'content-length', 'host', 'x-request-id']);
/** RFC 9110 section 5.1: a field name is a token. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
/** RFC 9110 section 5.5: visible characters, spaces and tabs; no CR, LF or NUL. */
const VALUE = /^[\t\x20-\x7e\x80-\xff]{0,8192}$/;

function checkName(name: string, flag: string): string {
  if (!TOKEN.test(name)) throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} "${name.slice(0, 60)}": not a header name`);
  const lower = name.toLowerCase();
  if (RESERVED.has(lower) || lower.startsWith('beam-'))
    throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} ${name}: Beam sets this header itself (hop-by-hop, framing, Host, X-Request-Id or beam-*)`);
  return name;
}

function parseAdd(rule: string, flag: string): [string, string] {
  const colon = rule.indexOf(':');
  if (colon <= 0) throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} "${rule.slice(0, 60)}": write it as "Name: value"`);
  const name = checkName(rule.slice(0, colon).trim(), flag);
  const value = rule.slice(colon + 1).trim();
  if (!VALUE.test(value)) throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} ${name}: the value has characters a header can't carry`);
  return [name, value];
}

/** The rules, or undefined when there are none; BEAM_ERR_BAD_OPTION names the first bad one. */
export function parseHeaderRules(options: HeaderRuleOptions): HeaderRules | undefined {
  const rules: HeaderRules = {
    requestRemove: new Set((options.requestHeaderRemove ?? []).map((n) => checkName(n.trim(), '--request-header-remove').toLowerCase())),
    requestAdd: (options.requestHeaderAdd ?? []).map((r) => parseAdd(r, '--request-header-add')),
    responseRemove: new Set((options.responseHeaderRemove ?? []).map((n) => checkName(n.trim(), '--response-header-remove').toLowerCase())),
    responseAdd: (options.responseHeaderAdd ?? []).map((r) => parseAdd(r, '--response-header-add')),
  };
  const none = rules.requestRemove.size + rules.requestAdd.length + rules.responseRemove.size + rules.responseAdd.length === 0;
  return none ? undefined : rules;
}

/** What a value's placeholders stand for. */
export interface RuleContext {
  clientIp: string | undefined;
  path: string;
}

function expand(value: string, context: RuleContext): string {
  // A client address or a path never carries CR or LF: the gateway and Node's parser refuse them.
  return value.replaceAll('{client_ip}', context.clientIp ?? '').replaceAll('{path}', context.path);
}

function apply(headers: HeaderPairs, remove: ReadonlySet<string>, add: ReadonlyArray<readonly [string, string]>, context: RuleContext): HeaderPairs {
  const out: HeaderPairs = remove.size > 0 ? headers.filter(([k]) => !remove.has(k.toLowerCase())) : [...headers];
  for (const [name, value] of add) out.push([name, expand(value, context)]);
  return out;
}

export function requestHeaders(rules: HeaderRules, headers: HeaderPairs, context: RuleContext): HeaderPairs {
  return apply(headers, rules.requestRemove, rules.requestAdd, context);
}

export function responseHeaders(rules: HeaderRules, headers: HeaderPairs, context: RuleContext): HeaderPairs {
  return apply(headers, rules.responseRemove, rules.responseAdd, context);
}
