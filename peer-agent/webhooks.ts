/**
 * Webhook verification (`--verify-webhook <provider> --verify-webhook-secret
 * <secret>`): the agent checks each request's signature over its exact body,
 * on every path, before the origin sees anything. A request without a valid
 * signature gets `401 BEAM_ERR_WEBHOOK_SIGNATURE`. Signatures are compared in
 * constant time; timestamps (Stripe, Slack, Standard Webhooks) must be within
 * WEBHOOK_TOLERANCE_S of the agent's clock, so a captured request can't be
 * replayed later.
 *
 *   github    X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>
 *   stripe    Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=...]
 *   slack     X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>,
 *             X-Slack-Request-Timestamp: <ts>
 *   standard  webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256(
 *             base64-decoded secret after "whsec_", "<id>.<ts>.<body>")> [v1,...]
 *   hmac      <--verify-webhook-header>: [sha256=]<hex or base64 HMAC-SHA256(secret, body)>
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { WEBHOOK_TOLERANCE_S } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { HeaderPairs } from './inspect.js';

export const WEBHOOK_PROVIDERS = ['github', 'stripe', 'slack', 'standard', 'hmac'] as const;
export type WebhookProvider = (typeof WEBHOOK_PROVIDERS)[number];

export interface WebhookVerifier {
  provider: WebhookProvider;
  /** The key the HMAC is made with (Standard Webhooks: the secret's base64 decoded). */
  key: Buffer;
  /** The signature's header, for `hmac`. */
  header?: string | undefined;
}

/** The verifier for the flags, or BEAM_ERR_BAD_OPTION saying what is missing. */
export function parseWebhookVerifier(provider: string, secret: string | undefined, header: string | undefined): WebhookVerifier {
  if (!(WEBHOOK_PROVIDERS as readonly string[]).includes(provider))
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--verify-webhook must be one of ${WEBHOOK_PROVIDERS.join(', ')}`);
  if (!secret) throw new BeamError('BEAM_ERR_BAD_OPTION', `--verify-webhook ${provider} needs --verify-webhook-secret (or BEAM_VERIFY_WEBHOOK_SECRET)`);
  const p = provider as WebhookProvider;
  if (p === 'hmac' && !header)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--verify-webhook hmac needs --verify-webhook-header <name>: the header that carries the signature');
  if (p !== 'hmac' && header) throw new BeamError('BEAM_ERR_BAD_OPTION', `--verify-webhook-header is for --verify-webhook hmac; ${p} has its own header`);
  let key = Buffer.from(secret, 'utf8');
  if (p === 'standard') {
    // Standard Webhooks secrets are "whsec_" and base64 of the key.
    const b64 = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
    key = Buffer.from(b64, 'base64');
    if (key.byteLength === 0 || key.toString('base64').replace(/=+$/, '') !== b64.replace(/=+$/, ''))
      throw new BeamError('BEAM_ERR_BAD_OPTION', '--verify-webhook-secret for standard webhooks is "whsec_" and base64, as the sender shows it');
  }
  return { provider: p, key, ...(header ? { header: header.toLowerCase() } : {}) };
}

const hmac = (key: Buffer, ...parts: Array<string | Buffer>): Buffer => {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Constant time for equal lengths; a length mismatch is no match (and says nothing about the bytes). */
function same(expected: Buffer, given: Buffer): boolean {
  return expected.byteLength === given.byteLength && timingSafeEqual(expected, given);
}

const HEX = /^[0-9a-f]+$/i;
function fromHex(value: string): Buffer | undefined {
  return HEX.test(value) && value.length % 2 === 0 ? Buffer.from(value, 'hex') : undefined;
}

function header(headers: HeaderPairs, name: string): string | undefined {
  const found = headers.filter(([k]) => k.toLowerCase() === name);
  // Two of a signature header is not a signature: which one would count?
  return found.length === 1 ? found[0]?.[1] : undefined;
}

function timely(ts: string | undefined, nowS: number): string | undefined {
  if (ts === undefined || !/^\d{1,12}$/.test(ts)) return 'no timestamp';
  return Math.abs(nowS - Number(ts)) <= WEBHOOK_TOLERANCE_S ? undefined : `timestamp ${ts} is more than ${WEBHOOK_TOLERANCE_S} s away`;
}

/** Whether `body` with these headers carries a valid signature: undefined when it does, else why not (for the log). */
export function webhookProblem(v: WebhookVerifier, headers: HeaderPairs, body: Buffer, nowS = Math.floor(Date.now() / 1000)): string | undefined {
  switch (v.provider) {
    case 'github': {
      const sig = header(headers, 'x-hub-signature-256');
      if (!sig?.startsWith('sha256=')) return 'no X-Hub-Signature-256';
      const given = fromHex(sig.slice(7));
      return given && same(hmac(v.key, body), given) ? undefined : 'X-Hub-Signature-256 does not match';
    }
    case 'stripe': {
      const sig = header(headers, 'stripe-signature');
      if (!sig) return 'no Stripe-Signature';
      const fields = sig.split(',').map((f) => f.trim().split('=') as [string, string | undefined]);
      const t = fields.find(([k]) => k === 't')?.[1];
      const late = timely(t, nowS);
      if (late) return `Stripe-Signature: ${late}`;
      const expected = hmac(v.key, `${t}.`, body);
      const ok = fields
        .filter(([k]) => k === 'v1')
        .some(([, value]) => {
          const given = fromHex(value ?? '');
          return given !== undefined && same(expected, given);
        });
      return ok ? undefined : 'no v1 signature in Stripe-Signature matches';
    }
    case 'slack': {
      const sig = header(headers, 'x-slack-signature');
      const ts = header(headers, 'x-slack-request-timestamp');
      if (!sig?.startsWith('v0=')) return 'no X-Slack-Signature';
      const late = timely(ts, nowS);
      if (late) return `X-Slack-Request-Timestamp: ${late}`;
      const given = fromHex(sig.slice(3));
      return given && same(hmac(v.key, `v0:${ts}:`, body), given) ? undefined : 'X-Slack-Signature does not match';
    }
    case 'standard': {
      const id = header(headers, 'webhook-id');
      const ts = header(headers, 'webhook-timestamp');
      const sig = header(headers, 'webhook-signature');
      if (!id || !sig) return 'no webhook-id or webhook-signature';
      const late = timely(ts, nowS);
      if (late) return `webhook-timestamp: ${late}`;
      const expected = hmac(v.key, `${id}.${ts}.`, body);
      const ok = sig.split(' ').some((entry) => {
        const [version, value] = entry.split(',', 2);
        return version === 'v1' && value !== undefined && same(expected, Buffer.from(value, 'base64'));
      });
      return ok ? undefined : 'no v1 signature in webhook-signature matches';
    }
    case 'hmac': {
      const name = v.header as string;
      const raw = header(headers, name);
      if (!raw) return `no ${name}`;
      const value = raw.startsWith('sha256=') ? raw.slice(7) : raw;
      const expected = hmac(v.key, body);
      const given = fromHex(value) ?? Buffer.from(value, 'base64');
      return same(expected, given) ? undefined : `${name} does not match`;
    }
  }
}
