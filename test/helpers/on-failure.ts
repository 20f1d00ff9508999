/**
 * When a test fails, prints what every beam process still running logged
 * (pino at the level the test chose), and what those that lately exited
 * with an error code logged: a failure seen once in CI then shows its cause
 * in the CI log instead of only the assertion.
 */
import { beforeEach } from 'vitest';
import { BeamProcess } from './procs.js';

/** How much of each process's stderr a failure prints. */
const TAIL_CHARS = 6_000;
/** Processes that exited with an error code this recently are printed too: one that crashed shows why. */
const EXITED_WITHIN_MS = 120_000;

beforeEach(({ onTestFailed }) => {
  onTestFailed(() => {
    for (const p of BeamProcess.live) {
      process.stderr.write(`\n--- beam ${p.args.join(' ')} (pid ${p.pid}), last ${TAIL_CHARS} chars of stderr:\n${p.stderr.slice(-TAIL_CHARS)}\n`);
    }
    for (const { process: p, code, at } of BeamProcess.failedExits) {
      if (performance.now() - at > EXITED_WITHIN_MS) continue;
      process.stderr.write(
        `\n--- beam ${p.args.join(' ')} (pid ${p.pid}) exited ${code}, last ${TAIL_CHARS} chars of stderr:\n${p.stderr.slice(-TAIL_CHARS)}\n`,
      );
    }
  });
});
