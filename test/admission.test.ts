/**
 * Admission (peer-agent/admission.ts), in memory: which request reaches the
 * origin and as what, check by check and in order, with refusals rendered
 * from the error registry.
 */
import { describe, expect, it } from 'vitest';
import { IpRules, RateLimit, VisitorLimit } from '../peer-agent/access.js';
import { type AdmissionPolicy, type AdmissionRequest, admit } from '../peer-agent/admission.js';
import { SECRET_COOKIE } from '../shared/constants.js';
import { ERRORS } from '../shared/errors.js';

const base: AdmissionRequest = {
  method: 'GET',
  target: '/',
  headers: [['Host', 'x']],
  body: false,
  upgrade: false,
  trustForwarded: false,
  visitorAddress: '127.0.0.1',
  visitorKey: 'session:a',
};
const open: AdmissionPolicy = { privateShare: false };
const AUTH = `Basic ${Buffer.from('a:b').toString('base64')}`;

describe('admit', () => {
  it('lets a plain request through unchanged, with its framing', async () => {
    expect(await admit(base, open)).toEqual({
      ok: true,
      target: '/',
      headers: [['Host', 'x']],
      framing: { kind: 'none' },
      setCookie: undefined,
      responseRules: [],
      webhooks: [],
    });
  });

  it('refuses in order: framing, then Host, then address, secret, visitors, rate, credentials', async () => {
    const everything: AdmissionPolicy = {
      privateShare: true,
      ipRules: new IpRules(['10.0.0.0/8'], []),
      basicAuth: { user: 'a', pass: 'b' },
      rateLimit: new RateLimit(1, 60),
      visitorLimit: new VisitorLimit(1),
    };
    const bad: AdmissionRequest = {
      ...base,
      headers: [
        ['Host', 'x'],
        ['Host', 'y'],
        ['Content-Length', '5'],
      ],
      secret: 's3cret',
      trustForwarded: true,
      forwardedFor: '192.0.2.1',
    };
    const codes: string[] = [];
    let request = bad;
    const fixes: Array<(r: AdmissionRequest) => AdmissionRequest> = [
      (r) => ({ ...r, headers: r.headers.filter(([k]) => k !== 'Content-Length') }),
      (r) => ({ ...r, headers: r.headers.filter(([, v]) => v !== 'y') }),
      (r) => ({ ...r, forwardedFor: '10.1.2.3' }),
      (r) => ({ ...r, headers: [...r.headers, ['Beam-Secret', 's3cret']] }),
    ];
    for (const fix of [...fixes, undefined]) {
      const verdict = await admit(request, everything);
      codes.push(verdict.ok ? 'ok' : verdict.refusal.code);
      if (fix) request = fix(request);
    }
    expect(codes).toEqual(['BEAM_ERR_BAD_FRAMING', 'BEAM_ERR_BAD_REQUEST', 'BEAM_ERR_FORBIDDEN', 'BEAM_ERR_PRIVATE', 'BEAM_ERR_UNAUTHORIZED']);
    // With credentials, the same client is still the one visitor allowed, but its second request is over the rate limit (1 a minute);
    // another address is one visitor too many.
    const withAuth = { ...request, headers: [...request.headers, ['Authorization', AUTH]] as Array<[string, string]> };
    const second = await admit(withAuth, everything);
    expect(second.ok ? 'ok' : second.refusal.code).toBe('BEAM_ERR_RATE_LIMITED');
    const another = await admit({ ...withAuth, forwardedFor: '10.9.9.9' }, everything);
    expect(another.ok ? 'ok' : another.refusal.code).toBe('BEAM_ERR_MAX_VISITORS');
  });

  it('renders refusals from the registry, with the headers a client needs', async () => {
    const verdict = await admit(base, { privateShare: false, basicAuth: { user: 'a', pass: 'b' } });
    expect(verdict.ok).toBe(false);
    if (verdict.ok) return;
    expect(verdict.refusal.response?.status).toBe(ERRORS.BEAM_ERR_UNAUTHORIZED.status);
    expect(verdict.refusal.response?.body).toBe(`${ERRORS.BEAM_ERR_UNAUTHORIZED.message}\n`);
    expect(verdict.refusal.response?.headers).toContainEqual(['WWW-Authenticate', 'Basic realm="beam", charset="UTF-8"']);
    const limited = await admit(base, { privateShare: false, rateLimit: new RateLimit(0.0001, 60) });
    expect(limited.ok ? undefined : limited.refusal.response?.headers.find(([k]) => k === 'Retry-After')?.[1]).toMatch(/^\d+$/);
  });

  it('a private share: the secret proves the request and never passes on; a link sets the cookie', async () => {
    const verdict = await admit({ ...base, target: '/a?beam_secret=s3cret&b=1', secret: 's3cret' }, { privateShare: true });
    expect(verdict).toMatchObject({ ok: true, target: '/a?b=1', setCookie: expect.stringMatching(new RegExp(`^${SECRET_COOKIE}=s3cret;`)) });
    // A visitor that proved it in the handshake still has it cut.
    const proven = await admit(
      {
        ...base,
        headers: [
          ['Host', 'x'],
          ['Cookie', `${SECRET_COOKIE}=s3cret; a=1`],
        ],
      },
      { privateShare: true },
    );
    expect(proven).toMatchObject({
      ok: true,
      headers: [
        ['Host', 'x'],
        ['Cookie', 'a=1'],
      ],
    });
  });

  it('a request with a body gets its framing: chunked when no length is given', async () => {
    expect(await admit({ ...base, body: true }, open)).toMatchObject({
      ok: true,
      framing: { kind: 'chunked' },
      headers: [
        ['Host', 'x'],
        ['Transfer-Encoding', 'chunked'],
      ],
    });
  });
});
