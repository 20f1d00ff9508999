/**
 * The names this machine's shares hold on remote servers, with their resume
 * tokens, in the config directory (`names.json`, mode 0600): a share started
 * again with the same `--name` from the same config directory takes its name
 * back at once, even within the resume grace after a crash, when the server
 * still holds it for the agent that had it. A share closed on purpose frees
 * its name, and its entry goes.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_CONFIG_BYTES } from '../shared/constants.js';
import { configDir } from '../transport/config-dir.js';

const FILE = 'names.json';

type Names = Record<string, { token: string; at: string }>;

const keyOf = (server: string, name: string): string => `${new URL(server).origin} ${name.toLowerCase()}`;

async function load(dir: string): Promise<Names> {
  try {
    const text = await readFile(join(dir, FILE), 'utf8');
    if (text.length > MAX_CONFIG_BYTES) return {};
    const parsed = JSON.parse(text) as unknown;
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Names) : {};
  } catch {
    // None yet, or unreadable: no token to present; the server decides as for anyone.
    return {};
  }
}

async function save(dir: string, names: Names): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `${FILE}.${process.pid}.tmp`);
  await writeFile(tmp, `${JSON.stringify(names, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, join(dir, FILE));
}

/** The resume token this config directory holds for `name` on `server`, if any. */
export async function resumeTokenFor(server: string, name: string, dir = configDir()): Promise<string | undefined> {
  const entry = (await load(dir))[keyOf(server, name)];
  return typeof entry?.token === 'string' ? entry.token : undefined;
}

/** Keeps the token of a name this share holds now. */
export async function rememberName(server: string, name: string, token: string, dir = configDir()): Promise<void> {
  const names = await load(dir);
  names[keyOf(server, name)] = { token, at: new Date().toISOString() };
  await save(dir, names);
}

/** The share freed its name: its token is no use any more. */
export async function forgetName(server: string, name: string, dir = configDir()): Promise<void> {
  const names = await load(dir);
  if (!(keyOf(server, name) in names)) return;
  delete names[keyOf(server, name)];
  await save(dir, names);
}
