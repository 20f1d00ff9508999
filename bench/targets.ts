/**
 * The targets a bench measures against (issue 18's table), as each bench
 * script reports them: printed with its own tables, and, when
 * BEAM_BENCH_TARGETS names a file, appended to it as JSON lines for
 * `npm run bench` (bench/all.ts) to print all of them in one table.
 */
import { appendFileSync } from 'node:fs';

export interface TargetResult {
  /** What is measured, as the issue names it. */
  measure: string;
  /** The measured value, with its unit or as a ratio (`0.66×`); `n/a` when it could not be measured. */
  value: string;
  /** The target, as the issue sets it (`≤ 50 ms`, `≥ 0.8×`). */
  target: string;
  /** Whether the value meets the target; undefined when there is no value. */
  met: boolean | undefined;
}

/** The environment variable naming the file bench/all.ts collects the targets in. */
export const TARGETS_ENV = 'BEAM_BENCH_TARGETS';

/** A target whose value must be at most `limit` (a time in ms, or a ratio with `ratio`). */
export function atMost(measure: string, value: number, limit: number, unit: 'ms' | 'ratio'): TargetResult {
  return result(measure, value, unit, `≤ ${limit}${unit === 'ms' ? ' ms' : '×'}`, value <= limit);
}

/** A target whose value must be at least `limit`. */
export function atLeast(measure: string, value: number, limit: number, unit: 'ms' | 'ratio'): TargetResult {
  return result(measure, value, unit, `≥ ${limit}${unit === 'ms' ? ' ms' : '×'}`, value >= limit);
}

function result(measure: string, value: number, unit: 'ms' | 'ratio', target: string, met: boolean): TargetResult {
  if (!Number.isFinite(value)) return { measure, value: 'n/a', target, met: undefined };
  return { measure, value: format(value, unit), target, met };
}

function format(value: number, unit: 'ms' | 'ratio'): string {
  return unit === 'ms' ? `${value.toFixed(value < 100 ? 1 : 0)} ms` : `${value.toFixed(2)}×`;
}

/** The markdown table of `targets`, with whether each is met. */
export function targetTable(targets: readonly TargetResult[]): string {
  const rows = targets.map((t) => `| ${t.measure} | ${t.value} | ${t.target} | ${t.met === undefined ? 'not measured' : t.met ? 'met' : 'not met'} |`);
  return ['| measure | value | target | |', '|---|---|---|---|', ...rows].join('\n');
}

/** Prints `targets` and, under bench/all.ts, hands them to it. */
export function reportTargets(targets: readonly TargetResult[]): void {
  process.stdout.write(`\n${targetTable(targets)}\n`);
  const file = process.env[TARGETS_ENV];
  if (file) appendFileSync(file, targets.map((t) => `${JSON.stringify(t)}\n`).join(''));
}
