/**
 * Apps often name their dev server by its local address
 * (`http://localhost:3000/api`, `ws://127.0.0.1:5173`). On the visitor's
 * machine that address is the visitor's own, so the page points such URLs at
 * the share: in HTML, scripts, styles and JSON it holds whole, and the worker
 * sends requests to those addresses through the tunnel too.
 */

/** The host:port forms an origin at `hostPort` is reached by on its own machine. */
export function localForms(hostPort: string): string[] {
  const port = /:(\d+)$/.exec(hostPort)?.[1];
  if (!port) return [];
  return [...new Set([`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `0.0.0.0:${port}`, hostPort])];
}

/** Whether a response of this type is text the page may rewrite. */
export function isRewritable(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'text/html' || type === 'text/css' || type === 'application/json' || type.endsWith('javascript') || type === 'application/xhtml+xml';
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Replaces http(s)://, ws(s):// and protocol-relative URLs of `locals` with the share's origin. */
export function rewriteLocal(text: string, locals: string[], shareOrigin: string): string {
  if (locals.length === 0) return text;
  const share = new URL(shareOrigin);
  const ws = share.protocol === 'https:' ? 'wss:' : 'ws:';
  const re = new RegExp(`(https?:|wss?:)?//(?:${locals.map(escapeRe).join('|')})(?![0-9])`, 'g');
  return text.replace(re, (_m, scheme: string | undefined) => {
    if (scheme === undefined) return `//${share.host}`;
    return `${scheme.startsWith('ws') ? ws : share.protocol}//${share.host}`;
  });
}

export const isHtml = (contentType: string): boolean => /^\s*(text\/html|application\/xhtml\+xml)\b/i.test(contentType);

/** Puts an inline script first in a page: after `<head>` (or `<html>`, or the doctype), before any of the app's own. */
export function injectScript(html: string, script: string): string {
  const tag = `<script>${script.replace(/<\//g, '<\\/')}</script>`;
  for (const re of [/<head(\s[^>]*)?>/i, /<html(\s[^>]*)?>/i, /<!doctype[^>]*>/i]) {
    const m = re.exec(html);
    if (m) return html.slice(0, m.index + m[0].length) + tag + html.slice(m.index + m[0].length);
  }
  return tag + html;
}

/**
 * Where a redirect answering one of the app's navigations sends the browser,
 * when that is off the share (another site: a sign-in's provider, whose pages
 * refuse frames), else undefined. `locals`: the origin's own addresses, which
 * are the share's.
 */
export function offShare(status: number, headers: Array<[string, string]>, url: URL, shareOrigin: string, locals: string[]): string | undefined {
  if (status < 300 || status >= 400 || status === 304) return undefined;
  const target = headers.find(([k]) => k.toLowerCase() === 'location')?.[1];
  if (!target) return undefined;
  let next: URL;
  try {
    next = new URL(target, url);
  } catch {
    return undefined;
  }
  if (next.protocol !== 'https:' && next.protocol !== 'http:') return undefined;
  return next.origin === shareOrigin || locals.includes(next.host) ? undefined : next.href;
}
