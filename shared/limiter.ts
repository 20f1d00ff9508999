/**
 * rate-limiter-flexible's in-memory limiter, and nothing else of it: the
 * package's index loads every store it supports (Redis, Mongo, SQL, ...),
 * some forty files on every start of `beam`. Node only (signaling, agent).
 */
import { createRequire } from 'node:module';
import type * as Flexible from 'rate-limiter-flexible';

const require = createRequire(import.meta.url);

export const RateLimiterMemory: typeof Flexible.RateLimiterMemory = require('rate-limiter-flexible/lib/RateLimiterMemory.js');
export type RateLimiterMemory = Flexible.RateLimiterMemory;
export const RateLimiterRes: typeof Flexible.RateLimiterRes = require('rate-limiter-flexible/lib/RateLimiterRes.js');
export type RateLimiterRes = Flexible.RateLimiterRes;
