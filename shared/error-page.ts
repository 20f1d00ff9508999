/**
 * What a visitor sees when Beam, not the app, answers: an HTML page for
 * browsers, JSON for everything else, and the code in a `beam-error` header.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { ERRORS, type ErrorCode } from './errors.js';

export interface ErrorBody {
  error: { code: ErrorCode; status: number; message: string; detail?: string };
}

export function errorBody(code: ErrorCode, detail?: string): ErrorBody {
  return { error: { code, status: ERRORS[code].status, message: ERRORS[code].message, ...(detail ? { detail } : {}) } };
}

function wantsHtml(headers: IncomingHttpHeaders): boolean {
  return (headers.accept ?? '').includes('text/html');
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

function html(body: ErrorBody): string {
  const { code, status, message, detail } = body.error;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${status} · Beam</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:10vh auto;padding:0 1rem;color:#222}
code{background:#f2f2f2;padding:.1em .3em;border-radius:3px}h1{font-size:1.4rem}</style></head>
<body><h1>${status}: ${escapeHtml(message)}</h1>
${detail ? `<p>${escapeHtml(detail)}</p>` : ''}
<p>Error code: <code>${code}</code></p></body></html>
`;
}

/** The error page for a request with these headers; the browser client renders Beam's errors with it too. */
export function render(headers: IncomingHttpHeaders, code: ErrorCode, detail?: string): { type: string; text: string } {
  const body = errorBody(code, detail);
  return wantsHtml(headers)
    ? { type: 'text/html; charset=utf-8', text: html(body) }
    : { type: 'application/json; charset=utf-8', text: `${JSON.stringify(body)}\n` };
}
