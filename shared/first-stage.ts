/**
 * What a browser page's first stage left for the page (gateway/first-stage.ts):
 * the JSON body of FIRST_STAGE_PATH, which the page (browser-client/page.ts)
 * reads once, through decode() like every value from outside.
 */
import * as v from 'valibot';

export const FirstStageReportSchema = v.object({
  /** The app's Set-Cookie headers, by the request target (origin-form) that got them, in order. */
  cookies: v.array(v.object({ target: v.pipe(v.string(), v.startsWith('/')), setCookie: v.array(v.string()) })),
  /** The origin's host:port (the agent's `beam-origin`). */
  origin: v.optional(v.string()),
  /** The app's first document: its target, status, and Beam's error code when Beam answered instead of the app. */
  document: v.optional(v.object({ target: v.string(), status: v.number(), error: v.optional(v.string()) })),
});

export type FirstStageReport = v.InferOutput<typeof FirstStageReportSchema>;
