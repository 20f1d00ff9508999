/**
 * The agent's check of a private share's secret on gateway requests (the
 * agent, not the gateway, decides who gets in). The secret may come as the
 * link's `beam_secret` query parameter (then the response sets a cookie
 * scoped to the share's host, so a browser's later requests carry it), as
 * that cookie, or as a `Beam-Secret` header. All three are removed before the
 * origin sees the request.
 */
import { timingSafeEqual } from 'node:crypto';
import { SECRET_COOKIE, SECRET_HEADER, SECRET_PARAM } from '../shared/constants.js';

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

export function admit(target: string, headers: Pair[], secret: string, https: boolean): Admission {
  let ok = false;
  const kept: Pair[] = [];
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === SECRET_HEADER) {
      if (same(value.trim(), secret)) ok = true;
      continue;
    }
    if (lower === 'cookie') {
      const cookies = value.split(';').map((c) => c.trim()).filter((c) => {
        const eq = c.indexOf('=');
        if (eq < 0 || c.slice(0, eq) !== SECRET_COOKIE) return c.length > 0;
        if (same(c.slice(eq + 1), secret)) ok = true;
        return false;
      });
      if (cookies.length) kept.push([name, cookies.join('; ')]);
      continue;
    }
    kept.push([name, value]);
  }
  // The parameter is cut out textually: the rest of the query reaches the app byte for byte.
  let newTarget = target;
  let setCookie: string | undefined;
  const q = target.indexOf('?');
  if (q >= 0) {
    const parts = target.slice(q + 1).split('&');
    const rest = parts.filter((part) => {
      const eq = part.indexOf('=');
      if (decoded(eq < 0 ? part : part.slice(0, eq)) !== SECRET_PARAM) return true;
      if (eq >= 0 && same(decoded(part.slice(eq + 1)), secret)) {
        ok = true;
        setCookie = `${SECRET_COOKIE}=${secret}; Path=/; HttpOnly; SameSite=Lax${https ? '; Secure' : ''}`;
      }
      return false;
    });
    newTarget = target.slice(0, q) + (rest.length ? `?${rest.join('&')}` : '');
  }
  return ok ? { ok, target: newTarget, headers: kept, setCookie } : { ok: false };
}

/** `user:pass` for --auth: BEAM_ERR_BAD_OPTION unless there is a user and a colon. */
export interface BasicCredentials {
  user: string;
  pass: string;
}

/**
 * Checks HTTP basic auth against the share's `--auth` credentials. A match is
 * removed (the origin never sees the tunnel's password); a mismatch or none
 * gets a 401 with a challenge, so browsers ask.
 */
export function checkBasic(headers: Pair[], creds: BasicCredentials): { ok: true; headers: Pair[] } | { ok: false } {
  const expected = `Basic ${Buffer.from(`${creds.user}:${creds.pass}`).toString('base64')}`;
  const i = headers.findIndex(([k, v]) => k.toLowerCase() === 'authorization' && same(v.trim(), expected));
  if (i < 0) return { ok: false };
  return { ok: true, headers: headers.filter((_, j) => j !== i) };
}
