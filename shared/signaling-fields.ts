/**
 * The fields the signaling schemas are built of, for both of their modules
 * (shared/signaling.ts, what every client decodes; shared/signaling-requests.ts,
 * what only the server and agents do).
 */
import * as v from 'valibot';

export const SHARE_KINDS = ['http', 'tcp', 'udp'] as const;
/** What a share carries: HTTP exchanges, raw TCP connections, or UDP datagrams. */
export type ShareKind = (typeof SHARE_KINDS)[number];

export const RELAY_MODES = ['auto', 'never', 'always'] as const;
export type RelayMode = (typeof RELAY_MODES)[number];

/** A string of at most `n` characters (and at least `min`). */
export const text = (n: number, min = 0) => v.pipe(v.string(), v.minLength(min), v.maxLength(n));

export const sessionId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{8,64}$/));
