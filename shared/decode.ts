/**
 * The one decoder of values from outside (signaling events, stream heads,
 * beam.yml, the inspector's API): a valibot schema, and a typed value back
 * or a BeamError that names the first problem and where it is. valibot, not
 * a heavier library, because the browser page (browser-client/) validates
 * signaling with the same schemas and carries them in its bundle.
 */
import * as v from 'valibot';
import { BeamError, type ErrorCode } from './errors.js';

export type Schema<T> = v.GenericSchema<unknown, T>;

/** Where an issue is (`shares.web.http`), and what it says; an unknown key is named as such. */
export function describeIssue(issue: v.BaseIssue<unknown> | undefined): { where: string | undefined; message: string } {
  if (!issue) return { where: undefined, message: 'invalid' };
  const path = v.getDotPath(issue);
  if (issue.type === 'strict_object' || issue.type === 'strict_tuple') {
    // valibot names the key in the path and in "Expected never": say it as a person would.
    const key = issue.path?.at(-1)?.key;
    const parent =
      issue.path && issue.path.length > 1
        ? issue.path
            .slice(0, -1)
            .map((p) => String(p.key))
            .join('.')
        : undefined;
    return { where: parent, message: `unknown key "${String(key)}"` };
  }
  return { where: path ?? undefined, message: issue.message };
}

/**
 * Decodes `value` with `schema`, or throws `code` (default BEAM_ERR_BAD_MESSAGE)
 * with "`what` at `where`: `message`".
 */
export function decode<T>(schema: Schema<T>, value: unknown, what: string, code: ErrorCode = 'BEAM_ERR_BAD_MESSAGE'): T {
  const parsed = v.safeParse(schema, value);
  if (parsed.success) return parsed.output;
  const { where, message } = describeIssue(parsed.issues[0]);
  throw new BeamError(code, `${what}${where ? ` at ${where}` : ''}: ${message}`);
}
