/**
 * How the inspector shows exchanges: bodies as pretty JSON, text or a hex
 * dump, and the whole list as a HAR 1.2 file (the format browsers' devtools
 * import: http://www.softwareishard.com/blog/har-12-spec/).
 */
import { TextDecoder } from 'node:util';
import type { CapturedBody, ExchangeDetail, HeaderPairs } from './inspect.js';

export interface RenderedBody {
  kind: 'empty' | 'json' | 'text' | 'binary';
  /** Pretty JSON, the text itself, or a hex dump (16 bytes a line, offset, hex, ASCII). */
  text: string;
  /** Bytes the exchange carried; `text` shows the first INSPECT_BODY_BYTES. */
  size: number;
  truncated: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function header(headers: HeaderPairs, name: string): string | undefined {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

/** Decodes as UTF-8, or undefined for bytes that aren't (a truncated tail may cut one character: it is dropped). */
function asText(bytes: Buffer, truncated: boolean): string | undefined {
  for (let cut = 0; cut <= (truncated ? 3 : 0); cut++) {
    try {
      return utf8.decode(bytes.subarray(0, bytes.byteLength - cut));
    } catch {
      // try one byte shorter: a multi-byte character may straddle the cut
    }
  }
  return undefined;
}

function hexDump(bytes: Buffer): string {
  const lines: string[] = [];
  for (let offset = 0; offset < bytes.byteLength; offset += 16) {
    const row = bytes.subarray(offset, offset + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

const TEXT_TYPES =
  /^(text\/|application\/(json|[\w.+-]*\+json|javascript|ecmascript|xml|[\w.+-]*\+xml|x-www-form-urlencoded|graphql|x-ndjson)|image\/svg\+xml)/i;
const JSON_TYPES = /^application\/(json|[\w.+-]*\+json)/i;

/** Shows a body by its Content-Type, falling back on what the bytes look like. */
export function renderBody(body: CapturedBody & { size: number }, headers: HeaderPairs): RenderedBody {
  const base = { size: body.size, truncated: body.truncated };
  if (body.bytes.byteLength === 0) return { kind: 'empty', text: '', ...base };
  const type = header(headers, 'content-type') ?? '';
  const encoding = header(headers, 'content-encoding');
  const text = encoding && encoding !== 'identity' ? undefined : asText(body.bytes, body.truncated);
  if (text === undefined || (type && !TEXT_TYPES.test(type) && /[\x00-\x08\x0e-\x1f]/.test(text))) {
    return { kind: 'binary', text: hexDump(body.bytes), ...base };
  }
  if (JSON_TYPES.test(type) || (!type && /^\s*[[{]/.test(text))) {
    try {
      return { kind: 'json', text: JSON.stringify(JSON.parse(text), null, 2), ...base };
    } catch {
      // a truncated or invalid JSON body is shown as it came
    }
  }
  return { kind: 'text', text, ...base };
}

interface HarHeader {
  name: string;
  value: string;
}

function harHeaders(headers: HeaderPairs): HarHeader[] {
  return headers.map(([name, value]) => ({ name, value }));
}

function harContent(body: CapturedBody, headers: HeaderPairs): { mimeType: string; text?: string; encoding?: 'base64' } {
  const mimeType = header(headers, 'content-type') ?? '';
  if (body.bytes.byteLength === 0) return { mimeType };
  const text = asText(body.bytes, false);
  return text !== undefined ? { mimeType, text } : { mimeType, text: body.bytes.toString('base64'), encoding: 'base64' };
}

/**
 * The exchanges as a HAR 1.2 log. URLs name the origin the requests went to.
 * Beam's own fields start with an underscore, as the spec asks.
 */
export function toHar(exchanges: ExchangeDetail[], origin: string, version: string): object {
  return {
    log: {
      version: '1.2',
      creator: { name: 'beam', version },
      entries: exchanges.map((x) => {
        const url = new URL(x.target, `http://${origin}`);
        const time = x.durationMs ?? -1;
        return {
          startedDateTime: x.startedAt,
          time: Math.max(time, 0),
          request: {
            method: x.method,
            url: url.href,
            httpVersion: 'HTTP/1.1',
            cookies: [],
            headers: harHeaders(x.requestHeaders),
            queryString: [...url.searchParams].map(([name, value]) => ({ name, value })),
            ...(x.requestBytes > 0 ? { postData: harContent(x.requestBody, x.requestHeaders) } : {}),
            headersSize: -1,
            bodySize: x.requestBytes,
          },
          response: {
            status: x.status ?? 0,
            statusText: x.statusText ?? '',
            httpVersion: 'HTTP/1.1',
            cookies: [],
            headers: harHeaders(x.responseHeaders),
            content: { size: x.responseBytes, ...harContent(x.responseBody, x.responseHeaders) },
            redirectURL: header(x.responseHeaders, 'location') ?? '',
            headersSize: -1,
            bodySize: x.responseBytes,
          },
          cache: {},
          timings: { send: 0, wait: Math.max(time, 0), receive: 0 },
          _beamPath: x.path,
          _beamVisitor: x.visitor,
          ...(x.error ? { _beamError: x.error } : {}),
          ...(x.requestBody.truncated || x.responseBody.truncated ? { comment: 'bodies truncated by the inspector' } : {}),
        };
      }),
    },
  };
}
