/** BEAM_* variables for every flag (cli/env.ts), on a real commander command. */

import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { applyEnv, envName } from '../cli/env.js';

function command(): Command {
  return new Command('t')
    .exitOverride()
    .option('--log-level <level>', '', 'warn')
    .option('--private')
    .option('--allow-ip <cidr...>')
    .option('--inspect <port>')
    .option('--no-inspect')
    .option('--name <name>');
}

function parse(args: string[], env: NodeJS.ProcessEnv): Record<string, unknown> {
  const c = command();
  c.parse(args, { from: 'user' });
  applyEnv(c, env);
  return c.opts();
}

describe('BEAM_* environment variables', () => {
  it('names each flag BEAM_<FLAG>', () => {
    expect(envName('logLevel')).toBe('BEAM_LOG_LEVEL');
    expect(envName('allowIp')).toBe('BEAM_ALLOW_IP');
    expect(envName('server')).toBe('BEAM_SERVER');
  });

  it('fills unset flags: values, lists, booleans, the --no- form', () => {
    const o = parse([], { BEAM_LOG_LEVEL: 'debug', BEAM_PRIVATE: 'yes', BEAM_ALLOW_IP: '10.0.0.0/8, 192.168.1.1', BEAM_INSPECT: 'off', BEAM_NAME: '' });
    expect(o).toMatchObject({ logLevel: 'debug', private: true, allowIp: ['10.0.0.0/8', '192.168.1.1'], inspect: false });
    expect(o['name']).toBeUndefined();
    expect(parse([], { BEAM_INSPECT: '4050' })['inspect']).toBe('4050');
    expect(parse([], { BEAM_PRIVATE: '0' })['private']).toBe(false);
  });

  it('lets the command line win', () => {
    expect(parse(['--log-level', 'error', '--inspect', '4041'], { BEAM_LOG_LEVEL: 'debug', BEAM_INSPECT: 'off' })).toMatchObject({
      logLevel: 'error',
      inspect: '4041',
    });
  });

  it('refuses a boolean it cannot read, naming the variable', () => {
    expect(() => parse([], { BEAM_PRIVATE: 'maybe' })).toThrow(/BEAM_PRIVATE="maybe"/);
  });
});
