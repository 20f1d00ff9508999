/**
 * A visitor that talks to the agent directly (peer to peer, no gateway) gets
 * no more power than a gateway visitor: the agent still connects only to its
 * origin, rewrites Host, and believes no forwarding headers from it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamProtocol } from '../../shared/frames.js';
import { decodeResponseHead, encodeHead, type RequestHead, readHead } from '../../shared/http-head.js';
import type { MuxStream } from '../../shared/mux.js';
import { type Stack, startStack } from '../helpers/origin.js';
import { onPath } from '../helpers/procs.js';
import { type DirectVisitor, directVisitor } from '../helpers/visitor.js';

let stack: Stack;
let visitor: DirectVisitor;

beforeAll(async () => {
  stack = await startStack();
  visitor = await directVisitor(stack.server.url, stack.agent.name);
});
afterAll(async () => {
  visitor?.close();
  await stack?.stop();
});

async function exchange(
  head: RequestHead,
): Promise<{ stream: MuxStream; head: ReturnType<typeof decodeResponseHead> | undefined; body: string; error: string | undefined }> {
  const stream = visitor.session.openStream(StreamProtocol.HTTP);
  stream.end(encodeHead(head));
  try {
    const response = decodeResponseHead(await readHead(stream));
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return { stream, head: response, body: Buffer.concat(chunks).toString(), error: undefined };
  } catch (err) {
    return { stream, head: undefined, body: '', error: (err as { code?: string }).code };
  }
}

describe('a direct (peer-to-peer) visitor', () => {
  it('is announced by the agent as a cli visitor on the direct path', async () => {
    // The gateway's warm link is announced too (a gateway visitor); this one is the CLI's.
    const session = await stack.agent.proc.waitFor((e) => e.event === 'session' && e['visitor'] !== 'gateway');
    expect(session['visitor']).toBe('cli');
    // Direct first, or right after the relay when a loaded machine slows the DTLS handshake.
    const direct = await stack.agent.proc.waitFor(onPath('direct', 'cli'));
    expect(direct['visitor']).toBe('cli');
  });

  it('reaches the origin, with Host rewritten and its forwarding headers dropped', async () => {
    const r = await exchange({
      method: 'GET',
      target: '/headers',
      headers: [
        ['Host', 'evil.example:22'],
        ['X-Forwarded-For', '6.6.6.6'],
        ['Forwarded', 'for=6.6.6.6'],
        ['X-Real-IP', '6.6.6.6'],
        ['X-Kept', 'yes'],
      ],
      upgrade: false,
      body: false,
    });
    expect(r.head?.kind).toBe('response');
    const seen = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
    expect(seen['host']).toBe(`127.0.0.1:${stack.origin.port}`);
    expect(seen['x-forwarded-for']).toBeUndefined();
    expect(seen['forwarded']).toBeUndefined();
    expect(seen['x-real-ip']).toBeUndefined();
    expect(seen['x-kept']).toBe('yes');
  });

  it('cannot name another destination: an absolute target is refused with BEAM_ERR_BAD_MESSAGE', async () => {
    const before = stack.origin.hits.size;
    const r = await exchange({ method: 'GET', target: 'http://127.0.0.1:22/', headers: [], upgrade: false, body: false });
    expect(r.head).toBeUndefined();
    expect(r.error).toBe('BEAM_ERR_BAD_MESSAGE');
    expect(stack.origin.hits.size).toBe(before);
  });

  it('a garbage head resets only its own stream; the next request works', async () => {
    const bad = visitor.session.openStream(StreamProtocol.HTTP);
    const failed = new Promise<string | undefined>((resolve) => bad.on('error', (err: { code?: string }) => resolve(err.code)));
    const garbage = Buffer.alloc(12);
    garbage.writeUInt32BE(8);
    garbage.write('not json', 4);
    bad.end(garbage);
    bad.resume();
    expect(await failed).toBe('BEAM_ERR_BAD_MESSAGE');
    const ok = await exchange({ method: 'GET', target: '/still-fine', headers: [], upgrade: false, body: false });
    expect(ok.body).toBe('hello from /still-fine');
  });
});
