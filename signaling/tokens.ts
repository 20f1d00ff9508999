/**
 * `beam serve --token-file`: agents must present a token, and a token may
 * reserve share names that only it can register.
 *
 * The file has one token a line, then the names it reserves, if any:
 *
 *   # token                      reserved names
 *   8f1c0d3e9a2b4c5d6e7f8091a2b3   alice-app alice-api
 *   0a9b8c7d6e5f4a3b2c1d0e9f8a7b
 *
 * Blank lines and `#` comments are skipped. Tokens are compared through their
 * SHA-256, in constant time, and logged only as a short id.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { MIN_AGENT_TOKEN_LENGTH } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { validateName } from '../shared/names.js';

interface TokenEntry {
  hash: Buffer;
  /** For logs: the first 8 hex digits of the hash. */
  id: string;
  reserved: Set<string>;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

export class AgentTokens {
  private readonly entries: TokenEntry[] = [];
  private readonly owners = new Map<string, string>();

  /** Parses a token file's text; `file` names it in errors. */
  constructor(text: string, file = 'token file') {
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) return;
      const [token, ...names] = line.split(/\s+/) as [string, ...string[]];
      if (token.length < MIN_AGENT_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(token)) {
        throw new BeamError(
          'BEAM_ERR_CONFIG',
          `${file}:${i + 1}: a token is at least ${MIN_AGENT_TOKEN_LENGTH} printable characters (e.g. \`openssl rand -hex 16\`)`,
        );
      }
      const hash = sha256(token);
      if (this.entries.some((e) => timingSafeEqual(e.hash, hash))) throw new BeamError('BEAM_ERR_CONFIG', `${file}:${i + 1}: this token is listed twice`);
      const entry: TokenEntry = { hash, id: hash.toString('hex').slice(0, 8), reserved: new Set() };
      for (const n of names) {
        let name: string;
        try {
          name = validateName(n);
        } catch (err) {
          throw new BeamError('BEAM_ERR_CONFIG', `${file}:${i + 1}: ${(err as BeamError).detail ?? n}`);
        }
        const owner = this.owners.get(name);
        if (owner !== undefined) throw new BeamError('BEAM_ERR_CONFIG', `${file}:${i + 1}: "${name}" is already reserved by another token`);
        this.owners.set(name, entry.id);
        entry.reserved.add(name);
      }
      this.entries.push(entry);
    });
    if (this.entries.length === 0) throw new BeamError('BEAM_ERR_CONFIG', `${file}: no tokens in it: agents could never register`);
  }

  static async load(file: string): Promise<AgentTokens> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new BeamError('BEAM_ERR_CONFIG', `${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    return new AgentTokens(text, file);
  }

  /** The id of the token presented, or undefined if it is not one of them. */
  check(token: string | undefined): string | undefined {
    if (token === undefined) return undefined;
    const hash = sha256(token);
    let found: string | undefined;
    // Every entry is compared, so the time taken says nothing about which one matched.
    for (const e of this.entries) if (timingSafeEqual(e.hash, hash)) found = e.id;
    return found;
  }

  /** The id of the token that reserved `name`, if any. */
  reservedBy(name: string): string | undefined {
    return this.owners.get(name.toLowerCase());
  }
}
