/**
 * `beam.yml`: several shares, run together by `beam start`.
 *
 * ```yaml
 * server: https://beam.example.com   # optional: default, one embedded server for all
 * token: 8f1c0d3e9a2b4c5d6e7f8091a2b3 # optional: the agent token, for a server with --token-file
 * inspect: true                      # optional: true (4040, else the next free port), a port, or false
 * shares:
 *   web:                             # a label, for the output
 *     http: 3000                     # exactly one of http / tcp / udp: a port or host:port
 *     name: my-app
 *     auth: alice:s3cret
 *   db:
 *     tcp: 5432
 *     private: true
 *   dns:
 *     udp: 127.0.0.1:5353
 * ```
 *
 * Each share takes the flags of `beam http|tcp|udp` by their long names:
 * name, private, auth, allow-ip, deny-ip, rate-limit, max-visitors, relay,
 * host-header, origin-timeout. Unknown keys are errors, so a typo never passes silently.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { MAX_CONFIG_BYTES, MAX_CONFIG_SHARES } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { RELAY_MODES, type ShareKind } from '../shared/signaling.js';
import type { ShareOptions } from './share.js';
import { parseTarget } from './options.js';

const target = z.union([z.number().int(), z.string()]).transform((v, ctx) => {
  try {
    parseTarget(String(v));
    return String(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as BeamError).detail ?? 'not a port or host:port' });
    return z.NEVER;
  }
});
const list = z.union([z.string(), z.array(z.string())]).transform((v) => (Array.isArray(v) ? v : v.split(/[\s,]+/).filter(Boolean)));

const ShareSchema = z
  .object({
    http: target.optional(),
    tcp: target.optional(),
    udp: target.optional(),
    name: z.string().optional(),
    private: z.boolean().optional(),
    auth: z.string().optional(),
    'allow-ip': list.optional(),
    'deny-ip': list.optional(),
    'rate-limit': z.string().optional(),
    'max-visitors': z.number().int().min(1).optional(),
    relay: z.enum(RELAY_MODES).optional(),
    'host-header': z.enum(['rewrite', 'preserve']).optional(),
    'origin-timeout': z.number().int().positive().optional(),
  })
  .strict()
  .refine((s) => [s.http, s.tcp, s.udp].filter((t) => t !== undefined).length === 1, 'each share needs exactly one of http, tcp or udp (a port or host:port)');

const ConfigSchema = z
  .object({
    server: z.string().optional(),
    /** The agent token for a server with --token-file. */
    token: z.string().optional(),
    inspect: z.union([z.boolean(), z.number().int().min(0).max(65535)]).optional(),
    shares: z
      .record(z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'a share label is 1-32 letters, digits, - or _'), ShareSchema)
      .refine((r) => Object.keys(r).length > 0, 'declare at least one share')
      .refine((r) => Object.keys(r).length <= MAX_CONFIG_SHARES, `at most ${MAX_CONFIG_SHARES} shares`),
  })
  .strict();

export interface ConfiguredShare {
  /** The key under `shares:`. */
  label: string;
  options: ShareOptions;
}

export interface Config {
  server: string | undefined;
  token: string | undefined;
  inspect: boolean | number;
  shares: ConfiguredShare[];
}

/** Parses and validates a config file's text; `file` names it in errors. */
export function parseConfig(text: string, file: string): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const at = e.linePos?.[0] ? `:${e.linePos[0].line}` : '';
    throw new BeamError('BEAM_ERR_CONFIG', `${file}${at}: ${e.message.split('\n')[0]}`);
  }
  let value: unknown;
  try {
    // maxAliasCount bounds alias expansion ("billion laughs").
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new BeamError('BEAM_ERR_CONFIG', `${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  const parsed = ConfigSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    const message = issue.code === 'unrecognized_keys' ? `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}` : issue.message;
    throw new BeamError('BEAM_ERR_CONFIG', `${file}: ${where}: ${message}`);
  }
  const c = parsed.data;
  return {
    server: c.server,
    token: c.token,
    inspect: c.inspect ?? true,
    shares: Object.entries(c.shares).map(([label, s]) => {
      const kind: ShareKind = s.http !== undefined ? 'http' : s.tcp !== undefined ? 'tcp' : 'udp';
      return {
        label,
        options: {
          target: (s.http ?? s.tcp ?? s.udp) as string,
          kind,
          name: s.name,
          private: s.private,
          auth: s.auth,
          allowIp: s['allow-ip'],
          denyIp: s['deny-ip'],
          rateLimit: s['rate-limit'],
          maxVisitors: s['max-visitors'],
          relay: s.relay,
          hostHeader: s['host-header'],
          originTimeoutMs: s['origin-timeout'],
        },
      };
    }),
  };
}

export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.byteLength > MAX_CONFIG_BYTES) throw new BeamError('BEAM_ERR_CONFIG', `${file}: larger than ${MAX_CONFIG_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (err) {
    if (err instanceof BeamError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new BeamError('BEAM_ERR_CONFIG', code === 'ENOENT' ? `${file} does not exist: write one (see \`beam start --help\`) or pass --config <file>` : `${file}: ${code ?? (err as Error).message}`);
  }
  return parseConfig(text, file);
}
