/** End-to-end tests spawn the built CLI and load the built browser client: build both once, first, as `npm run build` does. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
  // Noise bundled with its packages (transport/build.mjs), as users run it.
  execFileSync(process.execPath, [path.join(root, 'transport/build.mjs')], { stdio: 'inherit' });
  // The browser client's bundle, which the gateway serves.
  execFileSync(process.execPath, [path.join(root, 'browser-client/build.mjs')], { stdio: 'inherit' });
}
