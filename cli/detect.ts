/**
 * `beam` with no port: find the dev server. First the project's package.json
 * (its framework's default port, or the `--port` its dev script passes), then
 * what is listening on the usual dev ports.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { DETECT_PROBE_TIMEOUT_MS } from '../shared/constants.js';

export interface Detected {
  /** What was found, e.g. "Vite". */
  framework: string;
  port: number;
  /** Where it was found. */
  from: 'package.json' | 'listening';
}

/**
 * Frameworks by the package that marks them, most specific first: SvelteKit,
 * Astro and Remix projects also depend on Vite, and their own default wins.
 */
const FRAMEWORKS: ReadonlyArray<{ dependency: string; framework: string; port: number }> = [
  { dependency: '@sveltejs/kit', framework: 'SvelteKit', port: 5173 },
  { dependency: 'astro', framework: 'Astro', port: 4321 },
  { dependency: 'nuxt', framework: 'Nuxt', port: 3000 },
  { dependency: 'next', framework: 'Next.js', port: 3000 },
  { dependency: '@remix-run/dev', framework: 'Remix', port: 3000 },
  { dependency: '@angular/cli', framework: 'Angular', port: 4200 },
  { dependency: '@angular/core', framework: 'Angular', port: 4200 },
  { dependency: 'gatsby', framework: 'Gatsby', port: 8000 },
  { dependency: '@docusaurus/core', framework: 'Docusaurus', port: 3000 },
  { dependency: 'react-scripts', framework: 'Create React App', port: 3000 },
  { dependency: '@vue/cli-service', framework: 'Vue CLI', port: 8080 },
  { dependency: 'ember-cli', framework: 'Ember', port: 4200 },
  { dependency: '@storybook/react', framework: 'Storybook', port: 6006 },
  { dependency: 'vite', framework: 'Vite', port: 5173 },
  { dependency: 'parcel', framework: 'Parcel', port: 1234 },
  { dependency: 'webpack-dev-server', framework: 'webpack-dev-server', port: 8080 },
  { dependency: '@11ty/eleventy', framework: 'Eleventy', port: 8080 },
];

/** The usual dev ports, probed on localhost when package.json says nothing. */
export const COMMON_DEV_PORTS: readonly number[] = [5173, 3000, 4321, 4200, 8080, 8000, 1234, 6006, 5000, 4000, 8888];

/** `--port 4000`, `--port=4000` or `-p 4000` in a script. */
function scriptPort(script: string | undefined): number | undefined {
  const m = /(?:--port[= ]|(?:^|\s)-p\s+)(\d{2,5})\b/.exec(script ?? '');
  const port = m ? Number(m[1]) : undefined;
  return port !== undefined && port >= 1 && port <= 65535 ? port : undefined;
}

interface PackageJson {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  scripts?: Record<string, string>;
}

/** The dev server a package.json declares, if any; undefined when there is no package.json or nothing known in it. */
export async function detectFromPackageJson(dir: string): Promise<Detected | undefined> {
  let pkg: PackageJson;
  try {
    pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
  } catch {
    return undefined;
  }
  if (typeof pkg !== 'object' || pkg === null) return undefined;
  const deps = { ...(pkg.dependencies ?? {}), ...(pkg.devDependencies ?? {}) };
  const known = FRAMEWORKS.find((f) => typeof deps === 'object' && Object.hasOwn(deps, f.dependency));
  if (!known) return undefined;
  const scripts = typeof pkg.scripts === 'object' && pkg.scripts !== null ? pkg.scripts : {};
  const port = scriptPort(scripts['dev']) ?? scriptPort(scripts['start']) ?? known.port;
  return { framework: known.framework, port, from: 'package.json' };
}

/** Whether something accepts TCP connections on localhost:`port` (IPv4 or IPv6, as dev servers bind either). */
export function isListening(port: number, host = 'localhost'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, autoSelectFamily: true, autoSelectFamilyAttemptTimeout: 250 } as net.NetConnectOpts);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, DETECT_PROBE_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/** The common dev ports that are listening now, in COMMON_DEV_PORTS order. */
export async function listeningDevPorts(ports: readonly number[] = COMMON_DEV_PORTS): Promise<number[]> {
  const open = await Promise.all(ports.map((p) => isListening(p)));
  return ports.filter((_, i) => open[i]);
}

/**
 * The dev server to share when no port is given: package.json first; else
 * the one common dev port that is listening (`ports`: which ones; `--dev-ports`). Several listening and nothing
 * in package.json: undefined, with the candidates, so the user picks.
 */
export async function detectDevServer(
  dir: string,
  ports: readonly number[] = COMMON_DEV_PORTS,
): Promise<{ detected: Detected | undefined; candidates: number[] }> {
  const fromPackage = await detectFromPackageJson(dir);
  if (fromPackage) return { detected: fromPackage, candidates: [] };
  const open = await listeningDevPorts(ports);
  if (open.length === 1) return { detected: { framework: 'a server', port: open[0] as number, from: 'listening' }, candidates: open };
  return { detected: undefined, candidates: open };
}
