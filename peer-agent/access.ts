/**
 * The agent's check of a private share's secret on gateway requests (the
 * agent, not the gateway, decides who gets in). The secret may come as the
 * link's `beam_secret` query parameter (then the response sets a cookie
 * scoped to the share's host, so a browser's later requests carry it), as
 * that cookie, or as a `Beam-Secret` header. All three are removed before the
 * origin sees the request.
 */
import { timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { SECRET_COOKIE, SECRET_HEADER, SECRET_PARAM, VISITOR_IDLE_MS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { RateLimiterMemory, RateLimiterRes } from '../shared/limiter.js';

type Pair = [string, string];

export type Admission = { ok: true; target: string; headers: Pair[]; setCookie: string | undefined } | { ok: false };

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function decoded(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

/** A secret a request offered, and where. */
interface Offered {
  value: string;
  from: 'param' | 'cookie' | 'header';
}

/**
 * Cuts every place a secret may travel out of a request: the parameter, the
 * cookie and the header. What is left is what the origin (and the inspector) may see.
 */
export function stripSecret(target: string, headers: Pair[]): { target: string; headers: Pair[]; offered: Offered[] } {
  const offered: Offered[] = [];
  const kept: Pair[] = [];
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === SECRET_HEADER) {
      offered.push({ value: value.trim(), from: 'header' });
      continue;
    }
    if (lower === 'cookie') {
      const cookies = value
        .split(';')
        .map((c) => c.trim())
        .filter((c) => {
          const eq = c.indexOf('=');
          if (eq < 0 || c.slice(0, eq) !== SECRET_COOKIE) return c.length > 0;
          offered.push({ value: c.slice(eq + 1), from: 'cookie' });
          return false;
        });
      if (cookies.length) kept.push([name, cookies.join('; ')]);
      continue;
    }
    kept.push([name, value]);
  }
  // The parameter is cut out textually: the rest of the query reaches the app byte for byte.
  let newTarget = target;
  const q = target.indexOf('?');
  if (q >= 0) {
    const parts = target.slice(q + 1).split('&');
    const rest = parts.filter((part) => {
      const eq = part.indexOf('=');
      if (decoded(eq < 0 ? part : part.slice(0, eq)) !== SECRET_PARAM) return true;
      if (eq >= 0) offered.push({ value: decoded(part.slice(eq + 1)), from: 'param' });
      return false;
    });
    newTarget = target.slice(0, q) + (rest.length ? `?${rest.join('&')}` : '');
  }
  return { target: newTarget, headers: kept, offered };
}

export function admit(target: string, headers: Pair[], secret: string, https: boolean): Admission {
  const stripped = stripSecret(target, headers);
  const matched = stripped.offered.filter((o) => same(o.value, secret));
  if (matched.length === 0) return { ok: false };
  // The link's parameter becomes a cookie, so a browser's later requests carry it.
  const setCookie = matched.some((o) => o.from === 'param')
    ? `${SECRET_COOKIE}=${secret}; Path=/; HttpOnly; SameSite=Lax${https ? '; Secure' : ''}`
    : undefined;
  return { ok: true, target: stripped.target, headers: stripped.headers, setCookie };
}

/** `user:pass` for --auth: BEAM_ERR_BAD_OPTION unless there is a user and a colon. */
export interface BasicCredentials {
  user: string;
  pass: string;
}

/** `user:pass` (--auth, a policy's auth): both non-empty, or BEAM_ERR_BAD_OPTION. */
export function parseBasicCredentials(value: string): BasicCredentials {
  const colon = value.indexOf(':');
  if (colon < 1 || colon === value.length - 1)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--auth must be user:password (e.g. --auth alice:s3cret), both non-empty');
  return { user: value.slice(0, colon), pass: value.slice(colon + 1) };
}

/**
 * Checks HTTP basic auth against the share's `--auth` credentials. A match is
 * removed (the origin never sees the tunnel's password); a mismatch or none
 * gets a 401 with a challenge, so browsers ask.
 */
export function checkBasic(headers: Pair[], creds: BasicCredentials): { ok: true; headers: Pair[] } | { ok: false } {
  const expected = `${creds.user}:${creds.pass}`;
  const i = headers.findIndex(
    ([k, v]) => k.toLowerCase() === 'authorization' && basicCredentials(v) !== undefined && same(basicCredentials(v) as string, expected),
  );
  if (i < 0) return { ok: false };
  return { ok: true, headers: headers.filter((_, j) => j !== i) };
}

/**
 * The `user:pass` of a Basic Authorization value, or undefined. The scheme
 * is case-insensitive (RFC 9110 section 11.1: `basic` and `BASIC` are Basic);
 * the credentials are token68 in base64 (RFC 7617).
 */
export function basicCredentials(value: string): string | undefined {
  const m = /^\s*basic +([A-Za-z0-9+/]+=*)\s*$/i.exec(value);
  return m ? Buffer.from(m[1] as string, 'base64').toString('utf8') : undefined;
}

/** An IPv4-mapped IPv6 address (::ffff:1.2.3.4) is its IPv4 address. */
function plain(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/**
 * --allow-ip / --deny-ip, on node:net's BlockList. A visitor is let in when
 * no deny rule matches and, if there are allow rules, one of them does. An
 * address Beam could not learn is refused whenever there are rules at all.
 */
export class IpRules {
  private readonly allow: net.BlockList | undefined;
  private readonly deny: net.BlockList | undefined;

  constructor(allow: string[], deny: string[]) {
    this.allow = allow.length ? IpRules.list(allow, '--allow-ip') : undefined;
    this.deny = deny.length ? IpRules.list(deny, '--deny-ip') : undefined;
  }

  private static list(cidrs: string[], flag: string): net.BlockList {
    const list = new net.BlockList();
    for (const cidr of cidrs) {
      const [address = '', prefixText] = cidr.split('/');
      const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
      const max = family === 'ipv4' ? 32 : 128;
      const prefix = prefixText === undefined ? max : Number(prefixText);
      if (!family || !/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) {
        throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} "${cidr}" is not an address or CIDR range (e.g. 203.0.113.0/24 or 2001:db8::/32)`);
      }
      list.addSubnet(address, prefix, family);
    }
    return list;
  }

  allows(address: string | undefined): boolean {
    if (!address) return false;
    const a = plain(address.trim());
    const family = net.isIPv4(a) ? 'ipv4' : net.isIPv6(a) ? 'ipv6' : undefined;
    if (!family) return false;
    if (this.deny?.check(a, family)) return false;
    return this.allow ? this.allow.check(a, family) : true;
  }
}

/** --rate-limit N/min: requests (or TCP connections) per visitor, on rate-limiter-flexible's in-memory limiter. */
export class RateLimit {
  private readonly limiter: RateLimiterMemory;
  readonly points: number;
  readonly perSeconds: number;

  constructor(points: number, perSeconds: number) {
    this.points = points;
    this.perSeconds = perSeconds;
    this.limiter = new RateLimiterMemory({ points, duration: perSeconds });
  }

  /** Takes one request for `key`: 0 when allowed, else the milliseconds until one is. */
  async take(key: string): Promise<number> {
    try {
      await this.limiter.consume(key);
      return 0;
    } catch (res) {
      return res instanceof RateLimiterRes ? Math.max(res.msBeforeNext, 1) : 1_000;
    }
  }
}

/** `--rate-limit 100/min` (also /s, /h). */
export function parseRateLimit(value: string): RateLimit {
  const m = /^(\d{1,7})\/(s|sec|min|m|h|hour)$/.exec(value.trim());
  const points = Number(m?.[1] ?? 0);
  if (!m || points < 1) throw new BeamError('BEAM_ERR_BAD_OPTION', `--rate-limit "${value}" should look like 100/min (or 10/s, 1000/h)`);
  const unit = m[2]!;
  return new RateLimit(points, unit === 's' || unit === 'sec' ? 1 : unit === 'h' || unit === 'hour' ? 3600 : 60);
}

/**
 * --max-visitors: how many visitors a share has at once. A peer-to-peer
 * visitor is its session, held while the session lasts; a gateway visitor is
 * its client address, held until it has been quiet for VISITOR_IDLE_MS.
 */
export class VisitorLimit {
  readonly max: number;
  private readonly idleMs: number;
  private readonly now: () => number;
  /** Key -> last seen (Infinity while a session holds it). */
  private readonly seen = new Map<string, number>();

  constructor(max: number, options: { idleMs?: number; now?: () => number } = {}) {
    if (!Number.isInteger(max) || max < 1) throw new BeamError('BEAM_ERR_BAD_OPTION', `--max-visitors must be a whole number from 1 (got ${max})`);
    this.max = max;
    this.idleMs = options.idleMs ?? VISITOR_IDLE_MS;
    this.now = options.now ?? Date.now;
  }

  /** Lets `key` in (again), or refuses it when the share is full. `hold`: until leave(), however quiet. */
  enter(key: string, hold = false): boolean {
    const now = this.now();
    if (!this.seen.has(key)) {
      if (this.seen.size >= this.max) {
        for (const [k, last] of this.seen) if (now - last >= this.idleMs) this.seen.delete(k);
      }
      if (this.seen.size >= this.max) return false;
    }
    this.seen.set(key, hold ? Infinity : now);
    return true;
  }

  leave(key: string): void {
    this.seen.delete(key);
  }

  /** Seconds until a quiet gateway visitor's place frees up, for Retry-After. */
  get retryAfterS(): number {
    return Math.ceil(this.idleMs / 1000);
  }
}
