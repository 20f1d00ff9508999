/**
 * Every flag is also an environment variable: `--log-level` is
 * `BEAM_LOG_LEVEL`, `--allow-ip` is `BEAM_ALLOW_IP` (a list: commas or
 * spaces), `--private` is `BEAM_PRIVATE=1`. A flag on the command line wins;
 * an empty variable counts as unset. Boolean variables take 1/true/yes/on or
 * 0/false/no/off, and anything else is BEAM_ERR_BAD_OPTION, where commander's
 * own `.env()` would read `BEAM_PRIVATE=0` as "on".
 */
import type { Command, Option } from 'commander';
import { BeamError } from '../shared/errors.js';

/** `logLevel` -> `BEAM_LOG_LEVEL`. */
export function envName(attribute: string): string {
  return `BEAM_${attribute.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function parseBoolean(name: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new BeamError('BEAM_ERR_BAD_OPTION', `${name}="${value}": use 1 or 0 (true/false, yes/no, on/off)`);
}

/** Fills every option the command line left unset from its BEAM_* variable. */
export function applyEnv(command: Command, env: NodeJS.ProcessEnv = process.env): void {
  // A flag and its --no- form share one attribute (and one variable): the form that takes a value, else the positive one, reads it.
  const byAttribute = new Map<string, Option>();
  for (const option of command.options) {
    const key = option.attributeName();
    const seen = byAttribute.get(key);
    if (!seen || (!seen.required && option.required) || (seen.negate && !option.negate)) byAttribute.set(key, option);
  }
  const negatable = new Set(command.options.filter((o) => o.negate).map((o) => o.attributeName()));
  for (const [key, option] of byAttribute) {
    if (command.getOptionValueSource(key) === 'cli') continue;
    const name = envName(key);
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    let value: unknown;
    if (option.variadic) value = raw.split(/[\s,]+/).filter(Boolean);
    // BEAM_INSPECT=off is --no-inspect.
    else if (option.required || option.optional) value = negatable.has(key) && /^(false|no|off)$/i.test(raw) ? false : raw;
    else value = option.negate ? !parseBoolean(name, raw) : parseBoolean(name, raw);
    command.setOptionValueWithSource(key, value, 'env');
  }
}
