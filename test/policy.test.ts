/** A share's policy as a pure module: compiling it, matching paths the way an origin reads them, and running it in admission. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../cli/config.js';
import { admit } from '../peer-agent/admission.js';
import { compilePolicy, normalizedPath, type PolicyRuleOptions } from '../peer-agent/policy.js';
import { errorCodeOf } from '../shared/errors.js';

const basic = (user: string, pass: string): [string, string] => ['Authorization', `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`];

async function run(rules: PolicyRuleOptions[], method: string, target: string, headers: Array<[string, string]> = [], from = '10.1.2.3') {
  return admit(
    { method, target, headers, body: false, upgrade: false, trustForwarded: true, forwardedFor: from },
    { privateShare: false, rules: compilePolicy(rules) },
  );
}

describe('policy', () => {
  it('matches a path prefix segment-wise, however the path is spelled', () => {
    for (const [target, path] of [
      ['/admin', '/admin'],
      ['/%61dmin/x', '/admin/x'],
      ['/x/../admin', '/admin'],
      ['//admin', '/admin'],
      ['/./admin?q=1', '/admin'],
      ['/%2e%2e/admin', '/admin'],
      ['/a%2Fb', '/a%2Fb'],
    ]) {
      expect(normalizedPath(target as string), target).toBe(path);
    }
  });

  it('runs in order: the first deny or redirect answers, header rules add up, and other paths pass', async () => {
    const rules: PolicyRuleOptions[] = [
      { path: '/old', redirect: { to: '/new', status: 301 } },
      { path: '/internal', deny: 404 },
    ];
    rules.push({ 'request-header-add': ['X-One: 1'], 'response-header-add': ['X-Policy: yes'] });
    rules.push({ path: '/internal', 'request-header-add': ['X-Never: reached'] });
    const old = await run(rules, 'GET', '/old/page');
    expect(old.ok).toBe(false);
    if (!old.ok) expect(old.refusal).toMatchObject({ answer: true, response: { status: 301, headers: expect.arrayContaining([['Location', '/new']]) } });
    const older = await run(rules, 'GET', '/older');
    expect(older.ok).toBe(true);
    const internal = await run(rules, 'GET', '/%69nternal');
    expect(internal.ok).toBe(false);
    if (!internal.ok) expect(internal.refusal).toMatchObject({ code: 'BEAM_ERR_POLICY_DENIED', response: { status: 404 } });
    const other = await run(rules, 'GET', '/page');
    expect(other.ok).toBe(true);
    if (other.ok) {
      expect(other.headers).toContainEqual(['X-One', '1']);
      expect(other.responseRules).toHaveLength(1);
    }
  });

  it('asks for a webhook signature only on the paths a rule names', async () => {
    const rules: PolicyRuleOptions[] = [{ path: '/hooks', 'verify-webhook': { provider: 'github', secret: 's' } }];
    const hook = await run(rules, 'POST', '/hooks/github');
    expect(hook.ok && hook.webhooks.map((w) => w.provider)).toEqual(['github']);
    const page = await run(rules, 'GET', '/');
    expect(page.ok && page.webhooks).toEqual([]);
  });

  it('asks for auth, checks addresses and limits the rate only where a rule says so', async () => {
    const rules: PolicyRuleOptions[] = [
      { path: '/admin', 'allow-ip': ['10.0.0.0/8'] },
      { path: '/admin', auth: 'alice:s3cret' },
      { methods: ['POST'], 'rate-limit': '2/min' },
    ];
    expect((await run(rules, 'GET', '/public')).ok).toBe(true);
    const outside = await run(rules, 'GET', '/admin', [basic('alice', 's3cret')], '192.0.2.1');
    expect(!outside.ok && outside.refusal.code).toBe('BEAM_ERR_FORBIDDEN');
    const noAuth = await run(rules, 'GET', '/admin');
    expect(!noAuth.ok && noAuth.refusal.code).toBe('BEAM_ERR_UNAUTHORIZED');
    const authed = await run(rules, 'GET', '/admin', [basic('alice', 's3cret')]);
    expect(authed.ok).toBe(true);
    // The credentials never reach the origin.
    if (authed.ok) expect(authed.headers.some(([k]) => k.toLowerCase() === 'authorization')).toBe(false);
    const compiled = compilePolicy(rules);
    const post = () =>
      admit(
        { method: 'POST', target: '/form', headers: [], body: false, upgrade: false, trustForwarded: true, forwardedFor: '10.9.9.9' },
        { privateShare: false, rules: compiled },
      );
    expect((await post()).ok).toBe(true);
    expect((await post()).ok).toBe(true);
    const third = await post();
    expect(!third.ok && third.refusal.code).toBe('BEAM_ERR_RATE_LIMITED');
  });

  it('refuses rules that make no sense with BEAM_ERR_BAD_OPTION naming the rule', () => {
    for (const [rules, says] of [
      [[{ path: '/x' }], /policy\[0\]: no action/],
      [[{ deny: true, auth: 'a:b' }], /one action a rule/],
      [[{ name: 'bad', deny: 302 }], /policy\[0\] "bad": deny: 302/],
      [[{ redirect: '//evil.example' }], /redirect to/],
      [[{ redirect: '/\\evil.example' }], /redirect to/],
      [[{ redirect: { to: '/x', status: 200 } }], /redirect status 200/],
      [[{ path: 'admin', deny: true }], /must start with \//],
      [[{ methods: ['get'], deny: true }], /upper-case/],
      [[{ 'allow-ip': ['nope'] }], /not an address/],
      [[{ 'request-header-add': ['Host: x'] }], /Beam sets this header/],
      [[{ 'verify-webhook': { provider: 'gitlab', secret: 's' } }], /--verify-webhook must be one of/],
      [[{ 'verify-webhook': { provider: 'hmac', secret: 's' } }], /needs --verify-webhook-header/],
    ] as Array<[PolicyRuleOptions[], RegExp]>) {
      let err: unknown;
      try {
        compilePolicy(rules);
      } catch (e) {
        err = e;
      }
      expect(errorCodeOf(err), JSON.stringify(rules)).toBe('BEAM_ERR_BAD_OPTION');
      expect((err as Error).message).toMatch(says);
    }
  });

  it('beam.yml: a policy block, and its errors as BEAM_ERR_CONFIG with the share and the rule', () => {
    const config = parseConfig(
      ['shares:', '  web:', '    http: 3000', '    policy:', '      - path: /admin', '        deny: true', '      - redirect: { to: /new, status: 308 }'].join(
        '\n',
      ),
      'beam.yml',
    );
    expect(config.shares[0]?.options.policy).toEqual([{ path: '/admin', deny: true }, { redirect: { to: '/new', status: 308 } }]);
    expect(() => parseConfig('shares:\n  web:\n    http: 3000\n    policy:\n      - deny: 200\n', 'beam.yml')).toThrow(
      /beam\.yml: shares\.web\.policy\[0\]: deny: 200/,
    );
    expect(() => parseConfig('shares:\n  web:\n    http: 3000\n    policy:\n      - dney: true\n', 'beam.yml')).toThrow(
      expect.objectContaining({ code: 'BEAM_ERR_CONFIG' }),
    );
  });
});
