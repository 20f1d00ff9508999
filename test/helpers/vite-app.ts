/**
 * A small real Vite project for browser tests: a page that shows `msg.js`'s
 * message, counts its own loads on `window.loads`, and accepts `msg.js` by
 * HMR, so a test can edit the message and see it arrive without a reload.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Writes the project into a new temporary folder; returns the folder. */
export function writeViteApp(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  writeFileSync(
    path.join(dir, 'index.html'),
    '<!doctype html><html><head><title>Vite app</title></head><body><p id="out"></p><script type="module" src="/main.js"></script></body></html>',
  );
  setMessage(dir, 'one');
  writeFileSync(
    path.join(dir, 'main.js'),
    [
      "import { msg } from './msg.js';",
      "document.getElementById('out').textContent = msg;",
      'window.loads = (window.loads ?? 0) + 1;',
      "if (import.meta.hot) import.meta.hot.accept('./msg.js', (m) => { document.getElementById('out').textContent = m.msg; });",
      '',
    ].join('\n'),
  );
  return dir;
}

/** Edits the message the page shows (an HMR update for a page that has it open). */
export function setMessage(dir: string, msg: string): void {
  writeFileSync(path.join(dir, 'msg.js'), `export const msg = '${msg}';\n`);
}
