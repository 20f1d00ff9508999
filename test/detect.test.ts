/** Dev-server detection (cli/detect.ts) against fixture package.json files and a real listening server. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectFromPackageJson, isListening } from '../cli/detect.js';
import { close, listen } from './helpers/http.js';

function project(pkg: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-detect-'));
  writeFileSync(path.join(dir, 'package.json'), typeof pkg === 'string' ? pkg : JSON.stringify(pkg));
  return dir;
}

describe('detectFromPackageJson', () => {
  const cases: Array<[string, Record<string, string>, string, number]> = [
    ['Vite', { vite: '^5' }, 'Vite', 5173],
    ['Next.js', { next: '14', react: '18' }, 'Next.js', 3000],
    ['Astro (which also uses Vite)', { astro: '4', vite: '5' }, 'Astro', 4321],
    ['SvelteKit (which also uses Vite)', { '@sveltejs/kit': '2', vite: '5' }, 'SvelteKit', 5173],
    ['Angular', { '@angular/core': '17', '@angular/cli': '17' }, 'Angular', 4200],
    ['Nuxt', { nuxt: '3' }, 'Nuxt', 3000],
    ['Remix', { '@remix-run/dev': '2' }, 'Remix', 3000],
    ['Gatsby', { gatsby: '5' }, 'Gatsby', 8000],
    ['Vue CLI', { '@vue/cli-service': '5' }, 'Vue CLI', 8080],
  ];
  for (const [what, deps, framework, port] of cases) {
    it(`finds ${what} on ${port}`, async () => {
      expect(await detectFromPackageJson(project({ devDependencies: deps }))).toEqual({ framework, port, from: 'package.json' });
    });
  }

  it('takes the port the dev script passes (--port N, --port=N, -p N)', async () => {
    expect((await detectFromPackageJson(project({ dependencies: { vite: '5' }, scripts: { dev: 'vite --port 4000 --host' } })))?.port).toBe(4000);
    expect((await detectFromPackageJson(project({ dependencies: { next: '14' }, scripts: { dev: 'next dev -p 3100' } })))?.port).toBe(3100);
    expect((await detectFromPackageJson(project({ dependencies: { astro: '4' }, scripts: { start: 'astro dev --port=4400' } })))?.port).toBe(4400);
    expect((await detectFromPackageJson(project({ dependencies: { vite: '5' }, scripts: { dev: 'vite --port 99999' } })))?.port).toBe(5173);
  });

  it('finds nothing without a package.json, in a broken one, or with no known framework', async () => {
    expect(await detectFromPackageJson(mkdtempSync(path.join(tmpdir(), 'beam-detect-')))).toBeUndefined();
    expect(await detectFromPackageJson(project('{ not json'))).toBeUndefined();
    expect(await detectFromPackageJson(project('null'))).toBeUndefined();
    expect(await detectFromPackageJson(project({ dependencies: { express: '4' } }))).toBeUndefined();
  });
});

describe('isListening', () => {
  it('is true for a listening server and false once it is gone', async () => {
    const server = http.createServer((_req, res) => res.end());
    const port = await listen(server);
    expect(await isListening(port)).toBe(true);
    await close(server);
    expect(await isListening(port)).toBe(false);
  });
});
