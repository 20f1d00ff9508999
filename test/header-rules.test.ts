/** Header rules as a pure module: parsing, what is refused, and how rules apply. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../cli/config.js';
import { parseHeaderRules, requestHeaders, responseHeaders } from '../peer-agent/header-rules.js';
import { errorCodeOf } from '../shared/errors.js';

describe('header rules', () => {
  it('are none when no flag is given', () => {
    expect(parseHeaderRules({})).toBeUndefined();
    expect(parseHeaderRules({ requestHeaderAdd: [], responseHeaderRemove: [] })).toBeUndefined();
  });

  it('remove (any case) before they add, keep other values, and expand placeholders', () => {
    const rules = parseHeaderRules({
      requestHeaderAdd: ['X-A: 1', 'X-Who: {client_ip}{path}'],
      requestHeaderRemove: ['x-b'],
      responseHeaderAdd: ['Cache-Control: no-store'],
      responseHeaderRemove: ['cache-control', 'Server'],
    });
    if (!rules) throw new Error('no rules');
    expect(
      requestHeaders(
        rules,
        [
          ['X-B', 'gone'],
          ['X-A', '0'],
        ],
        { clientIp: '10.0.0.7', path: '/p' },
      ),
    ).toEqual([
      ['X-A', '0'],
      ['X-A', '1'],
      ['X-Who', '10.0.0.7/p'],
    ]);
    expect(
      responseHeaders(
        rules,
        [
          ['Server', 'x'],
          ['Cache-Control', 'max-age=60'],
        ],
        { clientIp: undefined, path: '/' },
      ),
    ).toEqual([['Cache-Control', 'no-store']]);
  });

  it('refuse reserved names, names that are not tokens, and values with CR, LF or NUL', () => {
    for (const options of [
      { requestHeaderAdd: ['Connection: close'] },
      { requestHeaderAdd: ['content-length: 5'] },
      { requestHeaderRemove: ['Host'] },
      { responseHeaderAdd: ['beam-error: x'] },
      { responseHeaderAdd: ['X-A: one\r\nX-B: two'] },
      { requestHeaderAdd: ['X-A: nul\0'] },
      { requestHeaderAdd: [': no name'] },
      { requestHeaderRemove: ['two words'] },
    ]) {
      let code: string | undefined;
      try {
        parseHeaderRules(options);
      } catch (err) {
        code = errorCodeOf(err);
      }
      expect(code, JSON.stringify(options)).toBe('BEAM_ERR_BAD_OPTION');
    }
  });
});

describe('beam.yml', () => {
  it('takes the header rules as lists, and the origin flags, for a share', () => {
    const config = parseConfig(
      [
        'shares:',
        '  api:',
        '    http: https://localhost:8443',
        '    app-protocol: http2',
        '    origin-insecure: true',
        '    request-header-add: ["X-Env: staging"]',
        '    response-header-remove: [server]',
      ].join('\n'),
      'beam.yml',
    );
    expect(config.shares[0]?.options).toMatchObject({
      target: 'https://localhost:8443',
      appProtocol: 'http2',
      originInsecure: true,
      requestHeaderAdd: ['X-Env: staging'],
      responseHeaderRemove: ['server'],
    });
    expect(() => parseConfig('shares:\n  api:\n    http: 3000\n    app-protocol: http3\n', 'beam.yml')).toThrow(
      expect.objectContaining({ code: 'BEAM_ERR_CONFIG' }),
    );
  });
});
