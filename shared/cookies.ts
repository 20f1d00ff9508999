/**
 * Cookie scope across shares. Every share of a server lives under one
 * domain (`<name>.<domain>`), so a Set-Cookie with `Domain=<domain>` from
 * share A would reach share B too: session fixation across shares (cookie
 * tossing). The gateway and the page keep an app's cookies on its own host:
 * a Domain attribute wider than (or other than) the share's own host is cut,
 * which leaves the cookie host-only (RFC 6265 section 5.3 step 6).
 *
 * Browsers refuse Domain attributes on a public suffix, so an operator of a
 * public server also puts its domain on the Public Suffix List, as tunnel
 * providers do; this rule holds without it.
 */

/** `host` without its port, lower-cased: `Example.test:8080` is `example.test`, `[::1]:80` is `[::1]`. */
export function hostOnly(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  return h.replace(/:\d*$/, '');
}

/**
 * The Set-Cookie value as the share's host may set it: a Domain attribute
 * that names anything but `host` itself is removed; everything else stays
 * byte for byte.
 */
export function scopeSetCookie(value: string, host: string): string {
  const own = hostOnly(host);
  const parts = value.split(';');
  let cut = false;
  const kept = parts.filter((part, i) => {
    if (i === 0) return true;
    const at = part.indexOf('=');
    const name = (at < 0 ? part : part.slice(0, at)).trim().toLowerCase();
    if (name !== 'domain') return true;
    const domain = (at < 0 ? '' : part.slice(at + 1)).trim().replace(/^\./, '').toLowerCase();
    if (domain === own) return true;
    cut = true;
    return false;
  });
  return cut ? kept.join(';') : value;
}

/** scopeSetCookie over header pairs: only Set-Cookie values change. */
export function scopeSetCookies<T extends readonly [string, string]>(pairs: T[], host: string): Array<[string, string]> {
  return pairs.map(([k, v]) => [k, k.toLowerCase() === 'set-cookie' ? scopeSetCookie(v, host) : v]);
}
