/**
 * undici's connection pool, loaded on its own. The package's index loads
 * fetch, WebSocket, caches and interceptors beside it: importing `undici`
 * added about 65 ms to every agent's start on Node 26 (2026-12-06), where
 * the pool and its HTTP/1.1 client are what the agent uses. undici has no
 * `exports` map, so the file is reachable; the lockfile pins its version and
 * any test that forwards a request fails at once if the file moves.
 */
import { createRequire } from 'node:module';
import type { Pool as UndiciPool } from 'undici';

export const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;
