/**
 * The cookie jar of one share, kept by the page. A Service Worker can neither
 * read the browser's cookies nor set them from a response it builds, so Beam
 * keeps the app's cookies itself: Set-Cookie from the agent's responses goes
 * in (parsed by set-cookie-parser), and each request gets the cookies whose
 * path matches (RFC 6265 section 5.4). The share is one host, so every cookie
 * is host-only. The jar lives in localStorage, so a reload or a second tab of
 * the same share has the same session.
 *
 * Scripts see cookies through document.cookie, the browser's own store: the
 * page copies every cookie without HttpOnly there too (so an app that reads
 * its CSRF token from a cookie finds it), and what scripts set there goes
 * out with the requests (withScriptCookies). HttpOnly cookies stay in the
 * jar, out of scripts' reach, as in a browser.
 */
import { MAX_JAR_COOKIE_BYTES, MAX_JAR_COOKIES } from '../shared/constants.js';

interface Cookie {
  name: string;
  value: string;
  path: string;
  /** Epoch ms; undefined for a session cookie. */
  expires: number | undefined;
  secure: boolean;
  httpOnly: boolean;
  created: number;
}

const STORAGE_KEY = 'beam:cookies';

/** The default path of a cookie set by a response to `requestPath` (RFC 6265 section 5.1.4). */
function defaultPath(requestPath: string): string {
  if (!requestPath.startsWith('/')) return '/';
  const last = requestPath.lastIndexOf('/');
  return last <= 0 ? '/' : requestPath.slice(0, last);
}

/** RFC 6265 section 5.1.4 path-match. */
function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

export class CookieJar {
  private cookies: Cookie[] = [];
  private readonly storage: Storage | undefined;

  constructor(storage?: Storage) {
    this.storage = storage;
    this.load();
  }

  /** Re-reads the jar (another tab of the share changed it). */
  load(): void {
    try {
      const saved = this.storage?.getItem(STORAGE_KEY);
      this.cookies = saved ? (JSON.parse(saved) as Cookie[]) : [];
    } catch {
      this.cookies = [];
    }
  }

  private save(): void {
    try {
      // Session cookies are kept too: in Beam a "session" is the tab's, and a reload keeps it.
      this.storage?.setItem(STORAGE_KEY, JSON.stringify(this.cookies));
    } catch {
      // storage full or denied: the jar still works for this page
    }
  }

  /** Takes the Set-Cookie headers of a response to `url` (the parser loads with the first: most visitors never need it). */
  async store(url: URL, setCookies: string[], now = Date.now()): Promise<void> {
    if (setCookies.length === 0) return;
    const { parse } = await import('set-cookie-parser');
    for (const c of parse(setCookies, { decodeValues: false })) {
      if (!c.name || c.name.length + c.value.length > MAX_JAR_COOKIE_BYTES) continue;
      // A Domain attribute naming another host is refused, as a browser would.
      if (c.domain && c.domain.replace(/^\./, '').toLowerCase() !== url.hostname.toLowerCase()) continue;
      const path = c.path?.startsWith('/') ? c.path : defaultPath(url.pathname);
      let expires: number | undefined;
      if (c.maxAge !== undefined) expires = now + c.maxAge * 1000;
      else if (c.expires) expires = c.expires.getTime();
      const at = this.cookies.findIndex((k) => k.name === c.name && k.path === path);
      const created = at >= 0 ? (this.cookies[at] as Cookie).created : now;
      if (at >= 0) this.cookies.splice(at, 1);
      if (expires !== undefined && expires <= now) continue; // deletion
      this.cookies.push({ name: c.name, value: c.value, path, expires, secure: c.secure ?? false, httpOnly: c.httpOnly ?? false, created });
    }
    // Oldest first out past the cap.
    if (this.cookies.length > MAX_JAR_COOKIES) this.cookies.splice(0, this.cookies.length - MAX_JAR_COOKIES);
    this.save();
  }

  /** The Cookie header for a request to `url`, or undefined. */
  header(url: URL, now = Date.now()): string | undefined {
    const live = this.cookies.filter((c) => c.expires === undefined || c.expires > now);
    if (live.length !== this.cookies.length) {
      this.cookies = live;
      this.save();
    }
    const secure = url.protocol === 'https:' || url.hostname === 'localhost' || url.hostname.endsWith('.localhost');
    const matching = live
      .filter((c) => pathMatches(url.pathname, c.path) && (!c.secure || secure))
      // Longer paths first, then older (RFC 6265 section 5.4 step 2).
      .sort((a, b) => b.path.length - a.path.length || a.created - b.created);
    return matching.length ? matching.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }
}

/** Parses a Cookie header (or document.cookie) into name/value pairs. */
function pairs(header: string | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    const name = (at < 0 ? '' : part.slice(0, at)).trim();
    if (name) out.push([name, part.slice(at + 1).trim()]);
  }
  return out;
}

/**
 * The Cookie header for a request: the cookies scripts can see
 * (document.cookie, which they may have set or changed), then the jar's
 * others (HttpOnly among them). `skip` names cookies that are Beam's own.
 */
export function withScriptCookies(jarHeader: string | undefined, scriptCookies: string, skip: ReadonlySet<string> = new Set()): string | undefined {
  const visible = pairs(scriptCookies).filter(([name]) => !skip.has(name));
  const seen = new Set(visible.map(([name]) => name));
  const all = [...visible, ...pairs(jarHeader).filter(([name]) => !seen.has(name))];
  return all.length ? all.map(([name, value]) => `${name}=${value}`).join('; ') : undefined;
}

/** The Set-Cookie headers scripts may see (no HttpOnly), for document.cookie. */
export function scriptVisible(setCookies: string[]): string[] {
  return setCookies.filter((c) => !/;\s*httponly\s*(;|$)/i.test(c));
}
