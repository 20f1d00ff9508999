/**
 * The inspector page's files (peer-agent/inspector-ui/), read once at load.
 * They are plain browser files, not compiled: from the TypeScript sources they
 * sit beside this module, from the build (dist/peer-agent/) two folders up.
 */
import { existsSync, readFileSync } from 'node:fs';

const folder = ['./inspector-ui/', '../../peer-agent/inspector-ui/'].map((p) => new URL(p, import.meta.url)).find((u) => existsSync(new URL('index.html', u)));
if (!folder) throw new Error('beam: the inspector page (peer-agent/inspector-ui/) is missing from this install');

const read = (name: string): string => readFileSync(new URL(name, folder), 'utf8');

export const INSPECTOR_PAGE = read('index.html');
export const INSPECTOR_SCRIPT = read('app.js');
export const INSPECTOR_STYLE = read('app.css');
