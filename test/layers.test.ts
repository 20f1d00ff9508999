/**
 * The floors of the tree (CONTRIBUTING.md): each folder imports only from
 * itself and the floors below it, and no module imports itself back through
 * others. Read from the sources' import lines, so a change that runs an
 * import up a floor or closes a cycle fails here.
 *
 *   4  cli/, index.ts, vite.ts  the command line and the library's entries
 *   3  app/                  share, connect, serve and their options
 *   2  peer-agent/, gateway/, browser-client/
 *   1  transport/, signaling/
 *   0  shared/               wire protocols, errors, limits: imports nothing of Beam's
 */

import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const FLOORS: Record<string, number> = {
  shared: 0,
  transport: 1,
  signaling: 1,
  'peer-agent': 2,
  gateway: 2,
  'browser-client': 2,
  app: 3,
  cli: 4,
  'index.ts': 4,
  'vite.ts': 4,
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(root, dir))) {
    const rel = path.join(dir, name);
    if (statSync(path.join(root, rel)).isDirectory()) out.push(...sources(rel));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** Every relative module a file imports or re-exports statically (type-only ones too), as paths from the root. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(root, file), 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*'(\.{1,2}\/[^']+)'/gms)) {
    found.push(path.normalize(path.join(path.dirname(file), m[1] as string)).replace(/\.js$/, '.ts'));
  }
  return found;
}

const floorOf = (file: string): number | undefined => FLOORS[file.split(path.sep)[0] as string];

const files = [
  ...Object.keys(FLOORS)
    .filter((k) => !k.endsWith('.ts'))
    .flatMap(sources),
  'index.ts',
  'vite.ts',
];
const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => files.includes(t))]));

describe('floors', () => {
  it('finds the tree it checks', () => {
    expect(files.length).toBeGreaterThan(80);
    expect(graph.get('index.ts')?.length).toBeGreaterThan(3);
  });

  it('no folder imports from a floor above its own, nor from a folder of its floor', () => {
    const wrong: string[] = [];
    for (const [file, deps] of graph) {
      const own = file.split(path.sep)[0];
      for (const dep of deps) {
        const other = dep.split(path.sep)[0];
        if (other === own) continue;
        const from = floorOf(file) as number;
        const to = floorOf(dep);
        // Beside one another is allowed only downward through the floors: gateway/ may use signaling/ (floor 1), not peer-agent/.
        if (to === undefined || to >= from) wrong.push(`${file} -> ${dep}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('shared/ imports nothing of Beam outside itself', () => {
    const out = [...graph]
      .filter(([f]) => f.startsWith(`shared${path.sep}`))
      .flatMap(([f, deps]) => deps.filter((d) => !d.startsWith(`shared${path.sep}`)).map((d) => `${f} -> ${d}`));
    expect(out).toEqual([]);
  });

  it('no module imports itself back through others', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (file: string): void => {
      state.set(file, 'open');
      stack.push(file);
      for (const dep of graph.get(file) ?? []) {
        if (state.get(dep) === 'open') cycles.push([...stack.slice(stack.indexOf(dep)), dep].join(' -> '));
        else if (!state.has(dep)) visit(dep);
      }
      stack.pop();
      state.set(file, 'done');
    };
    for (const file of graph.keys()) if (!state.has(file)) visit(file);
    expect(cycles).toEqual([]);
  });
});
