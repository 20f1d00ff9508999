/** Beam's version, read from its package.json: the nearest one up from this module (sources and build alike). */
import { existsSync, readFileSync } from 'node:fs';

function find(): string {
  for (let dir = new URL('./', import.meta.url); dir.pathname !== '/'; dir = new URL('../', dir)) {
    const file = new URL('package.json', dir);
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? '0.0.0';
  }
  return '0.0.0';
}

export const BEAM_VERSION = find();
