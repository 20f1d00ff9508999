/**
 * Compression of text responses for gateway clients that accept it (brotli,
 * else gzip), as a CDN in front of an app would do. The agent's data channel
 * carries the origin's bytes as they are; the gateway compresses on its way
 * out to the visitor, where bandwidth is dearest.
 *
 * Each chunk is flushed as it comes (SYNC_FLUSH), so streamed responses keep
 * streaming; Server-Sent Events are left alone all the same, as proxies and
 * browsers handle them best uncompressed.
 */

import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import zlib from 'node:zlib';
import compressible from 'compressible';
import Negotiator from 'negotiator';
import { COMPRESS_MIN_BYTES } from '../shared/constants.js';

export type Encoding = 'br' | 'gzip';

type Pairs = Array<[string, string]>;

function header(headers: Pairs, name: string): string | undefined {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

/** The encoding to compress a response with, or undefined to send it as it is. */
export function chooseEncoding(method: string, requestHeaders: IncomingHttpHeaders, status: number, headers: Pairs): Encoding | undefined {
  if (method === 'HEAD' || status < 200 || status === 204 || status === 206 || status === 304) return undefined;
  const existing = header(headers, 'content-encoding');
  if (existing !== undefined && existing.toLowerCase() !== 'identity') return undefined;
  if (/\bno-transform\b/i.test(header(headers, 'cache-control') ?? '')) return undefined;
  const type = header(headers, 'content-type');
  if (!type || /^text\/event-stream\b/i.test(type) || !compressible(type)) return undefined;
  const length = header(headers, 'content-length');
  if (length !== undefined && Number(length) < COMPRESS_MIN_BYTES) return undefined;
  // Equal q-values (browsers send "gzip, deflate, br"): brotli first. negotiator 1.x takes `preferred`; its @types lag behind.
  const negotiator = new Negotiator({ headers: requestHeaders }) as unknown as { encodings(available: string[], options: { preferred: string[] }): string[] };
  const chosen = negotiator.encodings(['br', 'gzip', 'identity'], { preferred: ['br', 'gzip'] })[0];
  return chosen === 'br' || chosen === 'gzip' ? chosen : undefined;
}

/**
 * The response headers once compressed: no Content-Length, the encoding
 * named, Vary extended, and a strong ETag made weak (the bytes differ now).
 */
export function compressedHeaders(headers: Pairs, encoding: Encoding): Pairs {
  const out: Pairs = [];
  let vary: string | undefined;
  for (const [k, v] of headers) {
    const lower = k.toLowerCase();
    if (lower === 'content-length' || lower === 'content-encoding') continue;
    if (lower === 'vary') {
      vary = vary ? `${vary}, ${v}` : v;
      continue;
    }
    if (lower === 'etag' && !v.startsWith('W/')) {
      out.push([k, `W/${v}`]);
      continue;
    }
    out.push([k, v]);
  }
  if (vary === undefined) vary = 'Accept-Encoding';
  else if (vary.trim() !== '*' && !/\baccept-encoding\b/i.test(vary)) vary = `${vary}, Accept-Encoding`;
  out.push(['Vary', vary], ['Content-Encoding', encoding]);
  return out;
}

export function compressor(encoding: Encoding): Transform {
  return encoding === 'br'
    ? // Quality 4: most of brotli's gain at a fraction of its default (11) cost, for bytes compressed on every response.
      zlib.createBrotliCompress({ flush: zlib.constants.BROTLI_OPERATION_FLUSH, params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 } })
    : zlib.createGzip({ flush: zlib.constants.Z_SYNC_FLUSH });
}
