/** The error registry, docs/errors.md and the names agree (fastify's errors test, for Beam). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BeamError, ERROR_CODES, ERRORS } from '../shared/errors.js';
import { randomName, validateName } from '../shared/names.js';
import { ROOT } from './helpers/procs.js';

describe('error registry', () => {
  const readme = readFileSync(`${ROOT}/docs/errors.md`, 'utf8');

  it('every code is documented in docs/errors.md with its HTTP status', () => {
    for (const code of ERROR_CODES) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${code}\` |`));
      expect(row, `docs/errors.md row for ${code}`).toBeDefined();
      expect(row).toContain(`| ${ERRORS[code].status} |`);
    }
  });

  it('docs/errors.md documents no code the registry lacks', () => {
    const documented = [...readme.matchAll(/^\| `(BEAM_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(new Set(documented)).toEqual(new Set(ERROR_CODES));
  });

  it('codes are BEAM_ERR_*, statuses are HTTP error statuses, messages say what to do', () => {
    for (const code of ERROR_CODES) {
      expect(code).toMatch(/^BEAM_ERR_[A-Z_]+$/);
      expect(ERRORS[code].status).toBeGreaterThanOrEqual(400);
      expect(ERRORS[code].status).toBeLessThan(600);
      expect(ERRORS[code].message.length).toBeGreaterThan(20);
    }
    const err = new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'localhost:3000');
    expect(err.code).toBe('BEAM_ERR_ORIGIN_UNREACHABLE');
    expect(err.status).toBe(502);
    expect(err.message).toContain('localhost:3000');
  });
});

describe('share names', () => {
  it('random names are adjective-noun-NNN and valid DNS labels', () => {
    for (let i = 0; i < 500; i++) {
      const name = randomName();
      expect(name).toMatch(/^[a-z]+-[a-z]+-\d{3}$/);
      expect(validateName(name)).toBe(name);
    }
  });

  it.each(['ab', 'x'.repeat(64), '-lead', 'trail-', 'under_score', 'dot.ted', 'spa ce', 'www', 'admin'])('refuses %j with BEAM_ERR_NAME_INVALID', (name) => {
    expect(() => validateName(name)).toThrow(expect.objectContaining({ code: 'BEAM_ERR_NAME_INVALID' }));
  });

  it('lower-cases valid names', () => {
    expect(validateName('My-App-1')).toBe('my-app-1');
  });
});
